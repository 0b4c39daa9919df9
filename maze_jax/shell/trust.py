"""A run directory is data: the code its saved config names runs only when the user named that code.

A config makes Python import code in three places: every `_target_` (a factory, a network, a settings reader), the
module of an `env.name` written `module:EnvId`, and the class paths that key the `wrappers` group. A config this
command composed from the package's groups, the user's `--config-dir` and the user's overrides is the user's own.
A config read from a run directory (resume, rollout, `load_policy`) may have been written by anyone: before
anything of it is built, each reference it holds must be maze_jax's own, gymnasium's wrappers, or a reference
that this command names itself (an override, or a YAML file of a `--config-dir` it gives). Anything else is
refused in one line, unless the user says they trust the run directory (`trust_input_dir=true`, or
`load_policy(..., trust=True)`).
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Mapping

from maze_jax.config import ConfigError

TRUSTED_CODE = ("maze_jax", "gymnasium.wrappers")
"""Code any config may name: the package's own factories, and gymnasium's wrappers (the `wrappers` group's format)."""

TRUST_SWITCH = "trust_input_dir"


def code_references(cfg: Any) -> list[tuple[str, str]]:
    """(config key, dotted path or module) of every place where `cfg` (a plain mapping) makes Python import code."""
    found: list[tuple[str, str]] = []

    def walk(node: Any, path: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                child = f"{path}.{key}" if path else str(key)
                if key == "_target_" and isinstance(value, str):
                    found.append((child, value))
                else:
                    walk(value, child)
        elif isinstance(node, (list, tuple)):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(cfg, "")
    if not isinstance(cfg, Mapping):
        return found
    env, wrappers = cfg.get("env"), cfg.get("wrappers")
    name = env.get("name") if isinstance(env, Mapping) else None
    if isinstance(name, str) and ":" in name:
        found.append(("env.name", name.rpartition(":")[0]))
    if isinstance(wrappers, Mapping):
        found += [(f"wrappers.{key}", str(key)) for key in wrappers if "." in str(key)]
    return found


def named_references(overrides: Iterable[str], config_dirs: Iterable[str]) -> set[str]:
    """The code this command names itself: `_target_` and `env.name=module:Id` overrides, and every reference in
    the YAML files of the config folders it gives (`--config-dir`)."""
    from omegaconf import OmegaConf

    named = set()
    for override in overrides:
        key, _, value = override.partition("=")
        key, value = key.lstrip("+~"), value.strip().strip("'\"")
        if key.endswith("_target_") and value:
            named.add(value)
        elif key == "env.name" and ":" in value:
            named.add(value.rpartition(":")[0])
    for folder in config_dirs:
        for root, _, files in os.walk(folder):
            group = os.path.relpath(root, folder).split(os.sep)[0]  # a group's file is that section: env/, wrappers/
            for file in files:
                if file.endswith((".yaml", ".yml")):
                    try:
                        loaded = OmegaConf.to_container(OmegaConf.load(os.path.join(root, file)))
                    except Exception:  # not a config of ours: Hydra reports it if it is used
                        continue
                    named.update(ref for _, ref in code_references(loaded if group == "." else {group: loaded}))
    return named


def is_trusted(reference: str, trusted: Iterable[str]) -> bool:
    """Whether `reference` is one of `trusted` or lies inside one (`maze_jax` covers `maze_jax.envs.make_env`)."""
    return any(reference == t or reference.startswith(t + ".") for t in trusted)


def check_trusted(cfg: Any, named: Iterable[str], source: str, how_to_trust: str = f"{TRUST_SWITCH}=true") -> None:
    """Refuses, in one line, a config read from `source` that names code neither maze_jax's (`TRUSTED_CODE`) nor
    `named` by the user; `how_to_trust` is the switch that accepts it anyway."""
    trusted = (*TRUSTED_CODE, *named)
    for key, reference in code_references(cfg):
        if not is_trusted(reference, trusted):
            raise ConfigError(f"{source} names code that this command does not: {key}={reference!r}. A run "
                              f"directory is data, so it runs only maze_jax's own code and code you name (an "
                              f"override such as {key}=..., or a --config-dir whose configs name it); pass "
                              f"{how_to_trust} if you trust {source}")
