"""Reading typed, range-checked values out of the composed Hydra config, with messages a user can act on."""

from __future__ import annotations

import difflib
import math
import os
from typing import Any

CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "conf")
"""The package's Hydra configs (absolute: found however a command starts)."""


class ConfigError(ValueError):
    """A user mistake in the config or command line; the CLI prints it in one line and exits with status 2."""


MAX_SEED = 2**32 - 1
"""The largest `seeding.*_base_seed`: a seed is folded into a JAX key as an unsigned 32-bit integer."""


def read(node: Any, key: str, kind: type, path: str, *, low: float | None = None, high: float | None = None,
         low_inclusive: bool = True, even: bool = False):
    """`node[key]` as `kind` (int, float or bool), checked against [low, high]; a ConfigError names `path.key`."""
    full = f"{path}.{key}" if path else key
    if key not in node:
        raise ConfigError(f"{full} is missing")
    value = node[key]
    if kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{full}={value!r}: expected true or false")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{full}={value!r}: expected {'an integer' if kind is int else 'a number'}")
    if kind is int and (isinstance(value, float) and not value.is_integer()):
        raise ConfigError(f"{full}={value!r}: expected an integer")
    value = kind(value)
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"{full}={value!r}: expected a finite number")
    if low is not None and (value < low or (value == low and not low_inclusive)):
        bound = f">= {low}" if low_inclusive else f"> {low}"
        raise ConfigError(f"{full}={value!r}: must be {bound}")
    if high is not None and value > high:
        raise ConfigError(f"{full}={value!r}: must be <= {high}")
    if even and value % 2:
        raise ConfigError(f"{full}={value!r}: must be even (antithetic pairs)")
    return value


def positive_ints(value: Any, key: str) -> tuple[int, ...]:
    """A config's list of layer sizes (`model.hidden_units`, `model.strides`, ...) as a tuple of positive ints; a
    ConfigError naming `key` for anything else (a number alone, an empty list, a zero)."""
    from collections.abc import Sequence
    from numbers import Integral

    values = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if not values or any(isinstance(v, bool) or not isinstance(v, Integral) or v <= 0 for v in values):
        shown = list(values) if values is not None else value
        raise ConfigError(f"{key}={shown!r}: expected a non-empty list of positive integers, e.g. [64, 64]")
    return tuple(int(v) for v in values)


def import_object(target: str, where: str):
    """The object a dotted path names (`package.module.name`, `module.Class.attribute`); a ConfigError naming the
    config key `where` when it cannot be imported."""
    import importlib

    parts = str(target).split(".")
    error = None
    for split in range(len(parts) - 1, 0, -1):  # the longest importable module prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ModuleNotFoundError as e:
            if e.name is None or not ".".join(parts[:split]).startswith(e.name):
                error = e  # the module exists but fails to import a module of its own
                break
            continue
        except Exception as e:  # the module itself raises on import
            error = e
            break
        try:
            for name in parts[split:]:
                obj = getattr(obj, name)
            return obj
        except AttributeError as e:
            error = e
            break
    raise ConfigError(f"{where}={target!r} cannot be imported: {error or 'no such module'}")


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message, cut to `limit` characters (for one-line errors)."""
    return (str(error).splitlines() or [""])[0][:limit]


def env_label(name: Any, group: str) -> str:
    """The env part of a run directory's name: the env id (`Acrobot-v1`, `minigrid_MiniGrid-Empty-8x8-v0`), made
    safe for a path, or the env group's name when the env has no id (`tutorial_cutting_2d`)."""
    import re

    text = re.sub(r"[^\w.-]+", "_", str(name or "")).strip("._")
    return text or group


SAME_MEANING = ({"lr", "learning_rate", "step_size"},)
"""Names other libraries give a setting: `algorithm.lr` on ES points to its `optimizer.step_size`."""


def did_you_mean(name: str, options, prefix: str = "") -> str:
    """'. Did you mean <prefix><closest>?' when an option is close to `name` (case aside), is a nested key of that
    name (`n_episodes` -> `rollout_evaluator.n_episodes`), or names the same setting (SAME_MEANING), else ''."""
    options = [str(o) for o in options]
    last = lambda key: key.rpartition(".")[2].lower()  # noqa: E731
    meaning = next((names for names in SAME_MEANING if last(name) in names), set())
    close = [o for o in options if o.lower() == name.lower()] or [o for o in options if last(o) == last(name)] or \
        difflib.get_close_matches(name, options, 1, 0.6) or [o for o in options if last(o) in meaning]
    return f". Did you mean {prefix}{close[0]}?" if close else ""
