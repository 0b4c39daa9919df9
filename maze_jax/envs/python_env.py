"""Python environments (the gymnasium API: gymnasium and envpool ids, your own `gymnasium.Env`) as maze_jax sees
them: gymnax-style spaces to build policies from, observations converted to arrays, env actions converted back, and
vectorised copies for the host collector (`maze_jax.shell.collectors.host`).

Observations: Box (as float32, bool stays bool), Discrete and MultiDiscrete (one-hot), MultiBinary, and Dict or
Tuple of these (a dict; Tuple entries are keyed "0", "1", ...). A structured env's `actor_id` stays an int, and the
observation keys its `action_masks` name become bool masks. Actions: Discrete, MultiDiscrete, MultiBinary (a choice
of 0 or 1 per entry), Box (clipped to its bounds), and Dict or Tuple of these (a Tuple as a dict keyed "0", "1", ...
inside maze_jax, a tuple again for the env). The env may declare `sub_steps` and `action_masks` as JAX envs do
(`maze_jax.envs.structured`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from maze_jax.config import ConfigError
from maze_jax.envs.structured import ACTOR_ID


SUPPORTED_ACTIONS = "Discrete, MultiDiscrete, MultiBinary, Box, and Dict or Tuple of these"


def _gym_spaces():
    from gymnasium import spaces

    return spaces


def action_space_for(space):
    """The gymnax-style space of a gymnasium action space (what `distribution_for` reads)."""
    from gymnax.environments import spaces as gx

    from maze_jax.envs.spaces import MultiDiscrete

    gs = _gym_spaces()
    if isinstance(space, gs.Discrete):
        return gx.Discrete(int(space.n))
    if isinstance(space, gs.MultiDiscrete):
        return MultiDiscrete(np.asarray(space.nvec).reshape(-1))
    if isinstance(space, gs.MultiBinary):
        return MultiDiscrete(np.full(int(np.prod(space.shape)), 2))
    if isinstance(space, gs.Box):
        return gx.Box(np.asarray(space.low, np.float32), np.asarray(space.high, np.float32), space.shape, np.float32)
    if isinstance(space, gs.Dict):
        return gx.Dict({k: action_space_for(v) for k, v in space.spaces.items()})
    if isinstance(space, gs.Tuple):
        return gx.Dict({str(i): action_space_for(v) for i, v in enumerate(space.spaces)})
    raise ConfigError(f"action space {space} is not supported ({SUPPORTED_ACTIONS} are)")


def _one_hot(x, n: int):
    x = np.asarray(x, np.int64)
    return (x[..., None] == np.arange(n)).astype(np.float32)


def to_observation(space, obs, masks: frozenset = frozenset(), key: str = ""):
    """A gymnasium observation (or a batch of them: every conversion keeps leading axes) as maze_jax arrays."""
    gs = _gym_spaces()
    if isinstance(space, gs.Dict):
        return {k: to_observation(s, obs[k], masks, k) for k, s in space.spaces.items()}
    if isinstance(space, gs.Tuple):
        return {str(i): to_observation(s, obs[i], masks, str(i)) for i, s in enumerate(space.spaces)}
    if key == ACTOR_ID:
        return np.asarray(obs, np.int32)
    if key in masks:
        return np.asarray(obs).astype(bool)
    if isinstance(space, gs.Discrete):
        return _one_hot(np.asarray(obs) - space.start, int(space.n))
    if isinstance(space, gs.MultiDiscrete):
        nvec, start = np.asarray(space.nvec).reshape(-1), np.asarray(space.start).reshape(-1)
        obs = np.asarray(obs).reshape(np.shape(obs)[:np.ndim(obs) - len(space.shape)] + (-1,))
        return np.concatenate([_one_hot(obs[..., i] - start[i], int(n)) for i, n in enumerate(nvec)], axis=-1)
    if isinstance(space, gs.MultiBinary):
        return np.asarray(obs, np.float32)
    if isinstance(space, gs.Box):
        return np.asarray(obs) if space.dtype == bool else np.asarray(obs, np.float32)
    raise ConfigError(f"observation space {space} is not supported (Box, Discrete, MultiDiscrete, MultiBinary, "
                      "and Dict or Tuple of these are)")


def check_first_observation(env, name: str) -> None:
    """A ConfigError, before training, when the env's first observation lies outside its declared
    observation_space (as gymnasium's `check_env` checks), naming the space and the value. A `reset` that raises is
    left to the collector, which reports a failing env in its own way."""
    try:
        obs, _ = env.reset(seed=0)
    except Exception:
        return
    if (problem := space_mismatch(env.observation_space, obs, "observation")) is not None:
        raise ConfigError(f"env {name}: reset returned an {problem}: the env and its observation_space disagree")


def space_mismatch(space, value, path: str) -> str | None:
    """Where `value` falls outside `space` ("observation['pos'] 7 outside Discrete(5)"), or None when it fits."""
    gs = _gym_spaces()
    if isinstance(space, gs.Dict) and isinstance(value, dict):
        return next((m for k, s in space.spaces.items()
                     if (m := space_mismatch(s, value.get(k), f"{path}[{k!r}]")) is not None), None)
    if isinstance(space, gs.Tuple) and isinstance(value, (tuple, list)) and len(value) == len(space.spaces):
        return next((m for i, (s, v) in enumerate(zip(space.spaces, value))
                     if (m := space_mismatch(s, v, f"{path}[{i}]")) is not None), None)
    if fits_space(space, value):
        return None
    shown = np.array2string(np.asarray(value), threshold=8) if np.ndim(value) else repr(value)
    return f"{path} {shown} (shape {np.shape(value)}, dtype {np.asarray(value).dtype}) outside {space}"


def fits_space(space, value) -> bool:
    """Whether `value` fits `space` as far as training reads it: its shape (Box, MultiBinary), its integer range
    (Discrete, MultiDiscrete: they become one-hot vectors), its keys (Dict). A Box's bounds and dtype are not
    checked: observations are cast to float32 and need no bounds."""
    gs = _gym_spaces()
    if isinstance(space, gs.Dict):
        return isinstance(value, dict) and all(k in value and fits_space(s, value[k]) for k, s in space.spaces.items())
    if isinstance(space, gs.Tuple):
        return isinstance(value, (tuple, list)) and len(value) == len(space.spaces) and \
            all(fits_space(s, v) for s, v in zip(space.spaces, value))
    try:
        array = np.asarray(value)
    except Exception:
        return False
    if isinstance(space, gs.Discrete):
        return array.shape == () and np.issubdtype(array.dtype, np.integer) and \
            int(space.start) <= int(array) < int(space.start) + int(space.n)
    if isinstance(space, gs.MultiDiscrete):
        start = np.asarray(space.start)
        return array.shape == space.shape and np.issubdtype(array.dtype, np.integer) and \
            bool(np.all(array >= start) and np.all(array < start + np.asarray(space.nvec)))
    return array.shape == tuple(space.shape or array.shape)


def to_env_action(space, action):
    """A batch of maze_jax actions (numpy) in the form a gymnasium vector env takes for `space`."""
    gs = _gym_spaces()
    if isinstance(space, gs.Dict):
        return {k: to_env_action(s, action[k]) for k, s in space.spaces.items()}
    if isinstance(space, gs.Tuple):
        return tuple(to_env_action(s, action[str(i)]) for i, s in enumerate(space.spaces))
    if isinstance(space, gs.Discrete):
        return np.asarray(action, np.int64) + int(space.start)
    n = np.shape(action)[0]
    if isinstance(space, gs.MultiDiscrete):
        return (np.asarray(action, np.int64).reshape((n,) + space.shape) + np.asarray(space.start)).astype(space.dtype)
    if isinstance(space, gs.MultiBinary):
        return np.asarray(action).reshape((n,) + space.shape).astype(space.dtype)
    if isinstance(space, gs.Box):
        return np.clip(np.asarray(action, np.float32).reshape((-1,) + space.shape), space.low, space.high)
    raise ConfigError(f"action space {space} is not supported ({SUPPORTED_ACTIONS} are)")


class PythonEnv:
    """A Python env behind the gymnax-style surface that maze_jax's models need (`action_space`,
    `observation_space`, `observation_example`, `sub_steps`, `action_masks`), plus `make_one()` (a fresh
    `gymnasium.Env`) for the host collector. `envpool_id` set: the collector steps an envpool batch instead.

    `make` builds one env, already wrapped as configured; it is called once here to read the spaces."""

    def __init__(self, make: Callable[[], Any], name: str, envpool_id: str | None = None,
                 envpool_kwargs: dict | None = None):
        self.make_one, self.name = make, name
        self.envpool_id, self.envpool_kwargs = envpool_id, dict(envpool_kwargs or {})
        probe = make()
        try:
            unwrapped = getattr(probe, "unwrapped", probe)
            self.env_class = f"{type(unwrapped).__module__}.{type(unwrapped).__qualname__}"  # what steps it
            self.sub_steps = tuple(getattr(unwrapped, "sub_steps", ()) or ())
            self.action_masks = dict(getattr(unwrapped, "action_masks", {}) or {})
            self.gym_observation_space, self.gym_action_space = probe.observation_space, probe.action_space
            spec = getattr(probe, "spec", None)
            self.max_episode_steps = getattr(spec, "max_episode_steps", None)
            if envpool_id is not None:  # envpool's limit is in its config; INT_MAX (e.g. CliffWalking) means none
                limit = getattr(getattr(spec, "config", None), "max_episode_steps", None)
                self.max_episode_steps = limit if limit is not None and 0 < limit < 2**31 - 1 else None
            self.reward_threshold = getattr(spec, "reward_threshold", None)
            if envpool_id is None:
                check_first_observation(probe, name)
        finally:
            probe.close()
        self._masks = frozenset(self.action_masks.values())
        self._action_space = action_space_for(self.gym_action_space)
        self._example = self.to_observation(self.gym_observation_space.sample(), batched=False)

    def action_space(self, params=None):
        return self._action_space

    def observation_space(self, params=None):
        return self.gym_observation_space

    def observation_example(self):
        """A zero observation of the converted shapes and dtypes (for initialising networks)."""
        import jax
        import jax.numpy as jnp

        return jax.tree.map(jnp.zeros_like, self._example)

    def to_observation(self, obs, batched: bool = True):
        """Gymnasium observations (a batch, or one with `batched=False`) as maze_jax arrays."""
        return to_observation(self.gym_observation_space, obs, self._masks)

    def to_env_action(self, action):
        """A batch of maze_jax actions as the vector env takes them."""
        return to_env_action(self.gym_action_space, action)
