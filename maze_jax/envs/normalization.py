"""Observation normalisation (Maze's observation-normalisation wrapper) as a gymnax-style env wrapper with fixed
statistics. Pure parts only: computing statistics from samples and applying them; `maze_jax.shell.wrappers` reads the
config, estimates the statistics and keeps them with the checkpoints.

Strategies: `mean_zero_std_one` ((x - mean) / std, a std of 0 counts as 1) and `range_zero_one`
((x - min) / (max - min), a range of 0 counts as 1); then an optional `clip_range`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np

STRATEGIES = {"mean_zero_std_one": ("mean", "std"), "range_zero_one": ("min", "max")}
PLAIN_KEY = "observation"  # the key of an env whose observation is one array, not a dict


class KeySettings(NamedTuple):
    """How one observation key is normalised: strategy, axes the statistics reduce (None: all, a scalar
    statistic; [0]: the sample axis only, one statistic per element) and (low, high) clipping (None: no bound)."""

    strategy: str = "mean_zero_std_one"
    axis: tuple | None = None
    clip_range: tuple = (None, None)


def compute_statistics(samples: np.ndarray, settings: KeySettings) -> dict:
    """Statistics of stacked observations `samples` (samples, *shape), shaped to broadcast against one observation."""
    samples = np.asarray(samples, np.float64)
    axes = tuple(range(samples.ndim)) if settings.axis is None else tuple(settings.axis)
    low, high = STRATEGIES[settings.strategy]
    if low == "mean":
        values = {"mean": samples.mean(axis=axes, keepdims=True), "std": samples.std(axis=axes, keepdims=True)}
    else:
        values = {"min": samples.min(axis=axes, keepdims=True), "max": samples.max(axis=axes, keepdims=True)}
    return {k: v[0].astype(np.float32) for k, v in values.items()}  # drop the sample axis


def normalize(x, settings: KeySettings, statistics: dict):
    """`x` (one observation or a batch of them) normalised with `statistics` and clipped (pure, jittable)."""
    x = jnp.asarray(x, jnp.float32)
    if settings.strategy == "mean_zero_std_one":
        shift, scale = statistics["mean"], statistics["std"]
    else:
        shift, scale = statistics["min"], statistics["max"] - statistics["min"]
    scale = jnp.where(jnp.asarray(scale) == 0, 1.0, scale)
    x = (x - shift) / scale
    low, high = settings.clip_range
    return jnp.clip(x, None if low is None else float(low), None if high is None else float(high))


class NormalizedObservations:
    """A gymnax-style env whose observations (and `info["final_observation"]`) are normalised with fixed
    `statistics` ({key: {name: array}}) for the keys in `settings`; everything else is the wrapped env's."""

    def __init__(self, env: Any, settings: dict, statistics: dict):
        self.env, self.settings, self.statistics = env, settings, statistics

    def normalize_observation(self, obs):
        if not isinstance(obs, dict):
            return normalize(obs, self.settings[PLAIN_KEY], self.statistics[PLAIN_KEY]) if self.settings else obs
        return {k: normalize(v, self.settings[k], self.statistics[k]) if k in self.settings else v
                for k, v in obs.items()}

    def reset(self, key, params):
        obs, state = self.env.reset(key, params)
        return self.normalize_observation(obs), state

    def step(self, key, state, action, params):
        obs, state, reward, terminated, truncated, info = self.env.step(key, state, action, params)
        if "final_observation" in info:
            info = {**info, "final_observation": self.normalize_observation(info["final_observation"])}
        return self.normalize_observation(obs), state, reward, terminated, truncated, info

    def __getattr__(self, name):  # action_space, sub_steps, action_masks, default_params, ...
        if name == "env":
            raise AttributeError(name)
        return getattr(self.env, name)
