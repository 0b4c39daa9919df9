"""Action distributions over a network's raw outputs: categorical for Discrete, diagonal Gaussian for Box, and a
joint distribution of independent heads for Dict and MultiDiscrete spaces. All take a flat output vector."""

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

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """The Box's low and high bound of every action dimension, (size,) float32 each."""
        return tuple(np.broadcast_to(np.asarray(bound, np.float32).reshape(-1), (self.size,)).copy()
                     for bound in (self.low, self.high))  # a copy: JAX would trace a broadcast view as a broadcast

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
        low, high = self.bounds()
        return jnp.clip(action, low, high).reshape(action.shape[:-1] + self.shape)


@dataclass(frozen=True)
class SquashedGaussian(DiagGaussian):
    """Maze's squashed Gaussian over a bounded Box: a Gaussian sample `u` squashed into the bounds,
    `low + (tanh(u) + 1) / 2 * (high - low)`, so every action is inside them without clipping.

    Trajectories keep `u`, so probability ratios are exact; `log_prob` adds the squash's log-Jacobian (a
    density of the env action). The entropy is the Gaussian's: the squashed one has no closed form."""

    def log_prob(self, out, action):
        log_1m_tanh2 = 2.0 * (math.log(2.0) - action - jax.nn.softplus(-2.0 * action))  # log(1 - tanh(u)^2)
        return super().log_prob(out, action) - (log_1m_tanh2 + jnp.log(self.half_widths())).sum(-1)

    def half_widths(self) -> np.ndarray:
        """(high - low) / 2 of every action dimension, (size,)."""
        low, high = self.bounds()
        return (high - low) / 2

    def to_env(self, action):
        low, high = self.bounds()
        squashed = low + (jnp.tanh(action) + 1.0) / 2.0 * (high - low)
        return squashed.reshape(action.shape[:-1] + self.shape)


BOX_DISTRIBUTIONS = {"gaussian": DiagGaussian, "squashed_gaussian": SquashedGaussian}


@dataclass(frozen=True)
class Joint:
    """Independent heads over consecutive slices of the output: a dict action (Dict spaces) or, with
    `stacked`, an integer vector (MultiDiscrete). Log-probabilities and entropies are sums over heads."""

    heads: tuple  # ((name, distribution), ...) in output order
    stacked: bool = False

    @property
    def n_outputs(self) -> int:
        return sum(dist.n_outputs for _, dist in self.heads)

    def slices(self) -> list[tuple[int, int]]:
        """(start, stop) of each head's outputs."""
        stops = np.cumsum([dist.n_outputs for _, dist in self.heads]).tolist()
        return list(zip([0] + stops[:-1], stops))

    def _per_head(self, fn, out, *others):
        return [fn(dist, out[..., a:b], *(o[i] for o in others))
                for i, ((_, dist), (a, b)) in enumerate(zip(self.heads, self.slices()))]

    def _action(self, parts):
        return jnp.stack(parts, axis=-1) if self.stacked else {name: p for (name, _), p in zip(self.heads, parts)}

    def head_actions(self, action):
        """The action of each head, in head order."""
        return [action[..., i] for i in range(len(self.heads))] if self.stacked else [action[n] for n, _ in self.heads]

    def sample(self, key, out):
        keys = jax.random.split(key, len(self.heads))
        return self._action(self._per_head(lambda d, o, k: d.sample(k, o), out, keys))

    def mode(self, out):
        return self._action(self._per_head(lambda d, o: d.mode(o), out))

    def log_prob(self, out, action):
        return sum(self._per_head(lambda d, o, a: d.log_prob(o, a), out, self.head_actions(action)))

    def entropy(self, out):
        return sum(self._per_head(lambda d, o: d.entropy(o), out))

    def to_env(self, action):
        parts = [dist.to_env(p) for (_, dist), p in zip(self.heads, self.head_actions(action))]
        return self._action(parts)


def leaf_heads(dist) -> list[tuple[str, object]]:
    """(name, distribution) of each single head in output order: a Joint inside a Joint (a MultiDiscrete or
    MultiBinary entry of a Dict or Tuple action) is opened, its heads named `<entry>_<i>`; a distribution that is
    not a Joint is one head named "action"."""
    if not isinstance(dist, Joint):
        return [("action", dist)]
    return [(name, head) if not isinstance(head, Joint) else (f"{name}_{inner}", leaf)
            for name, head in dist.heads for inner, leaf in leaf_heads(head)]


def leaf_slices(dist) -> list[tuple[int, int]]:
    """(start, stop) of each of `leaf_heads(dist)` in the distribution's outputs."""
    stops = np.cumsum([head.n_outputs for _, head in leaf_heads(dist)]).tolist()
    return list(zip([0] + stops[:-1], stops))


def leaf_actions(dist, action) -> list:
    """The action of each of `leaf_heads(dist)`, in order."""
    if not isinstance(dist, Joint):
        return [action]
    return [leaf for (_, head), part in zip(dist.heads, dist.head_actions(action)) for leaf in leaf_actions(head, part)]


def join_leaves(dist, parts: list):
    """An action of `dist` from its heads' actions in `leaf_heads` order (the inverse of `leaf_actions`)."""
    if not isinstance(dist, Joint):
        return parts[0]
    joined, at = [], 0
    for _, head in dist.heads:
        n = len(leaf_heads(head))
        joined.append(join_leaves(head, parts[at:at + n]))
        at += n
    return dist._action(joined)


def bound_key(bound) -> float | tuple:
    """A Box bound as a distribution holds it (hashable): one float where every dimension has the same bound, else
    a tuple, in float32 as the actions are. So gymnax's scalar bound and gymnasium's array of it describe one space."""
    values = np.asarray(bound, np.float32).reshape(-1)
    return float(values[0]) if values.size and np.all(values == values[0]) else tuple(values.tolist())


def distribution_for(space, order: tuple | None = None, box: str = "gaussian"):
    """The distribution for a gymnax action space: Discrete, Box, MultiDiscrete (`nvec`) or a Dict of these.
    `order` lists a Dict space's keys in output order (default: the space's own order); `box` names the
    distribution of Box heads (`gaussian`, clipped to the bounds, or `squashed_gaussian`, Maze's for bounded Boxes)."""
    if box not in BOX_DISTRIBUTIONS:
        raise ConfigError(f"model.box_distribution={box!r} is unknown. Valid: {', '.join(BOX_DISTRIBUTIONS)}")
    if hasattr(space, "nvec"):
        return Joint(tuple((str(i), Categorical(int(n))) for i, n in enumerate(space.nvec)), stacked=True)
    if hasattr(space, "spaces") and isinstance(space.spaces, dict):
        keys = tuple(order or space.spaces)
        return Joint(tuple((k, distribution_for(space.spaces[k], box=box)) for k in keys))
    if hasattr(space, "n"):
        return Categorical(int(space.n))
    if hasattr(space, "low") and hasattr(space, "shape"):
        if box == "squashed_gaussian" and not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
            raise ConfigError(f"model.box_distribution=squashed_gaussian needs a bounded Box action space; this one "
                              f"is [{space.low}, {space.high}]: use model.box_distribution=gaussian (with an "
                              f"algorithm other than SAC, which needs the bounds)")
        return BOX_DISTRIBUTIONS[box](tuple(space.shape), bound_key(space.low), bound_key(space.high))
    raise ConfigError(f"action space {space!r} is not supported (Discrete, Box, MultiDiscrete and Dict are)")
