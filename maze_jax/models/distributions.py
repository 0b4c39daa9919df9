"""Action distributions over a network's raw outputs: categorical for Discrete, diagonal Gaussian for Box."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError


@dataclass(frozen=True)
class Categorical:
    """Logits over `n` actions."""

    n: int

    @property
    def n_outputs(self) -> int:
        return self.n

    def sample(self, key, out):
        return jax.random.categorical(key, out)

    def mode(self, out):
        return jnp.argmax(out, axis=-1)

    def log_prob(self, out, action):
        logp = jax.nn.log_softmax(out)
        return jnp.take_along_axis(logp, action[..., None].astype(jnp.int32), axis=-1)[..., 0]

    def entropy(self, out):
        logp = jax.nn.log_softmax(out)
        return -(jnp.exp(logp) * logp).sum(-1)

    def to_env(self, action):
        return action


@dataclass(frozen=True)
class DiagGaussian:
    """Mean and log standard deviation (concatenated) of a Gaussian over a Box of `shape`, clipped to its bounds."""

    shape: tuple
    low: float | tuple
    high: float | tuple

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))

    @property
    def n_outputs(self) -> int:
        return 2 * self.size

    def _split(self, out):
        mean, log_std = jnp.split(out, 2, axis=-1)
        return mean, jnp.clip(log_std, -5.0, 2.0)

    def sample(self, key, out):
        mean, log_std = self._split(out)
        return mean + jnp.exp(log_std) * jax.random.normal(key, mean.shape)

    def mode(self, out):
        return self._split(out)[0]

    def log_prob(self, out, action):
        mean, log_std = self._split(out)
        z = (action - mean) / jnp.exp(log_std)
        return (-0.5 * z**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, out):
        _, log_std = self._split(out)
        return (log_std + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)

    def to_env(self, action):
        low, high = np.asarray(self.low), np.asarray(self.high)
        return jnp.clip(action, low.reshape(-1), high.reshape(-1)).reshape(action.shape[:-1] + self.shape)


def distribution_for(space):
    """The distribution for a gymnax action space (Discrete or Box)."""
    if hasattr(space, "n"):
        return Categorical(int(space.n))
    if hasattr(space, "low") and hasattr(space, "shape"):
        as_key = lambda b: float(b) if np.ndim(b) == 0 else tuple(np.asarray(b, float).reshape(-1).tolist())
        return DiagGaussian(tuple(space.shape), as_key(space.low), as_key(space.high))
    raise ConfigError(f"action space {space!r} is not supported (Discrete and Box are)")
