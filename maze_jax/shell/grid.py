"""A grid of hyperparameters trained in one compiled program: `+grid.lr=[1e-4,3e-4] +grid.entropy_coef=[0,0.01]`.

The grid is the product of the named values (keys of the `algorithm` group, dotted as in the config:
`optimizer.step_size` for ES), each configuration read and checked as a whole algorithm config would be. Only
traced hyperparameters can be swept: a key that shapes the compiled program (`n_rollout_steps`, a network width) is
refused in one line that lists the keys that can. Every configuration trains `runner.n_seeds` seeds: member
`k * n_seeds + s` of the run's member axis is configuration `k`, seed `s` (see `collectors.seeds`).
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
from typing import Any, Mapping, NamedTuple

import jax
import numpy as np

from maze_jax.config import ConfigError, did_you_mean


class Grid(NamedTuple):
    """The configurations of a grid: `keys` (dotted algorithm keys), `values` (one tuple of values per
    configuration, in `keys`' order; the product of the named values, the first key varying slowest) and
    `hyperparams` (the traced hyperparameters, one leading axis of configurations)."""

    keys: tuple
    values: tuple
    hyperparams: Any

    @property
    def size(self) -> int:
        return len(self.values)

    def label(self, k: int) -> str:
        """`lr=0.0003 entropy_coef=0.01`: what sets configuration `k` apart."""
        return " ".join(f"{key}={value:g}" for key, value in zip(self.keys, self.values[k]))

    def member_names(self, n_seeds: int) -> list[str]:
        """The members' names in TensorBoard: `config_<k>`, with several seeds `config_<k>/seed_<s>`."""
        return [f"config_{k}" if n_seeds == 1 else f"config_{k}/seed_{s}" for k in range(self.size)
                for s in range(n_seeds)]


def flat_keys(node: Mapping, prefix: str = "") -> list[str]:
    """Every leaf key of a nested mapping, dotted (`optimizer.step_size`)."""
    keys = []
    for key, value in node.items():
        if isinstance(value, Mapping):
            keys.extend(flat_keys(value, f"{prefix}{key}."))
        else:
            keys.append(f"{prefix}{key}")
    return keys


def _set(node: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value


def sweepable_keys(algorithm: Mapping, settings) -> list[str]:
    """The algorithm config's keys that set a traced hyperparameter of `settings` (its settings object)."""
    names = set(type(settings.hyperparams()).names())
    return [key for key in flat_keys(algorithm) if key.rpartition(".")[2] in names]


def static_fields(settings) -> dict:
    """The settings' fields that shape the compiled program (all but the traced ones)."""
    return {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if not f.metadata.get("traced")}


def count_configs(grid: Mapping | None) -> int:
    """The configurations a saved config's `grid` names (1 without one), without checking it again."""
    if not grid:
        return 1
    sizes = [len(v) if isinstance(v, (list, tuple)) else 1 for v in (_get(grid, key) for key in flat_keys(grid))]
    return int(np.prod(sizes))


def read_grid(grid: Mapping | None, algorithm: Mapping, runner: Mapping, read_algorithm) -> Grid | None:
    """The grid `grid` ({dotted algorithm key: list of values}) names, checked: None for none. `read_algorithm`
    reads one algorithm config (shell.settings.read_algorithm)."""
    if not grid:
        return None
    if not isinstance(grid, Mapping):
        raise ConfigError(f"grid={grid!r}: expected keys of the algorithm group with lists of values, e.g. "
                          "+grid.lr=[0.0001,0.001]")
    base = read_algorithm(algorithm, runner)
    if not hasattr(base, "hyperparams"):
        raise ConfigError(f"grid: the algorithm {type(base).__name__} has no traced hyperparameters to sweep")
    sweepable = sweepable_keys(algorithm, base)
    can = f"Keys that can be swept: {', '.join(sweepable)}"
    keys = flat_keys(grid)
    values = {}
    for key in keys:
        given = _get(grid, key)
        given = list(given) if isinstance(given, (list, tuple)) else [given]
        if not given:
            raise ConfigError(f"grid.{key}=[]: give at least one value. {can}")
        if key not in flat_keys(algorithm):
            raise ConfigError(f"grid.{key}: the algorithm group has no key {key}{did_you_mean(key, sweepable)} {can}")
        if key not in sweepable:
            raise ConfigError(f"grid.{key}: {key} is static (it shapes the compiled program), so one program cannot "
                              f"train several values of it: sweep it with --multirun. {can}")
        values[key] = given
    configs, settings = tuple(itertools.product(*values.values())), []
    for config in configs:
        node = copy.deepcopy(dict(algorithm))
        for key, value in zip(keys, config):
            _set(node, key, value)
        try:
            settings.append(read_algorithm(node, runner))
        except ConfigError as error:
            raise ConfigError(f"grid: {error}") from None
    for one in settings:  # a traced key that also sets a static field (none today): still one program each
        if static_fields(one) != static_fields(base):
            raise ConfigError(f"grid: {', '.join(keys)} change the compiled program; sweep them with --multirun")
    hyperparams = jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *(s.hyperparams() for s in settings))
    return Grid(tuple(keys), tuple(tuple(float(v) for v in config) for config in configs), hyperparams)


def _get(node: Mapping, dotted: str):
    for part in dotted.split("."):
        node = node[part]
    return node
