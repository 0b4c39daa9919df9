"""The EnvSpec every part of maze_jax takes, gymnax environments by the gym ids Maze users type, and `env` configs
with a `_target_` factory."""

from __future__ import annotations

from typing import Any, NamedTuple

from maze_jax.config import ConfigError, read
from maze_jax.envs.structured import sub_steps

# gym ids that gymnax does not register, as (gymnax id, episode length).
_ALIASES = {"CartPole-v0": ("CartPole-v1", 200)}
# gym's "solved" thresholds for the ids that have one.
_THRESHOLDS = {
    "CartPole-v0": 195.0,
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "MountainCarContinuous-v0": 90.0,
}


class EnvSpec(NamedTuple):
    """An environment ready for training: gymnax-style env, its params pytree, display name and solved threshold.

    A Python env (`maze_jax.envs.python_env.PythonEnv`, params None) trains through the host collector."""

    env: Any
    params: Any
    name: str
    reward_threshold: float | None = None

    @property
    def is_python(self) -> bool:
        """A Python env (stepped on the host), not a JAX env."""
        return hasattr(self.env, "make_one")

    @property
    def horizon(self) -> int:
        """Longest possible episode in calls of `step`: the static scan length of one evaluation episode.
        (A structured env's `max_steps_in_episode` counts whole steps, each `len(sub_steps)` calls.)"""
        return int(self.params.max_steps_in_episode) * max(len(sub_steps(self.env)), 1)

    def observation_example(self):
        """A zero observation of the env's shapes and dtypes (for initialising networks), without running it."""
        import jax
        import jax.numpy as jnp

        if self.is_python:
            return self.env.observation_example()
        shapes = jax.eval_shape(self.env.reset, jax.random.key(0), self.params)[0]
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)


def gymnax_ids() -> set[str]:
    """The ids `make_gymnax` takes: gymnax's own, plus gym ids that map onto them (`CartPole-v0`)."""
    import gymnax  # imported here: it is slow to import and not every env needs it

    return set(gymnax.registered_envs) | set(_ALIASES)


def read_threshold(value: Any, default: float | None) -> float | None:
    """`env.reward_threshold`: a number, null (no threshold) or "auto" (`default`, the env's own)."""
    if value == "auto":
        return None if default is None else float(default)
    if value is None:
        return None
    return read({"reward_threshold": value}, "reward_threshold", float, "env")


def read_episode_cap(value: Any) -> int | None:
    """`env.max_episode_steps`: a positive integer, or null for the env's own limit."""
    return None if value is None else read({"max_episode_steps": value}, "max_episode_steps", int, "env", low=1)


def make_gymnax(name: str, max_episode_steps: int | None = None, reward_threshold: Any = "auto") -> EnvSpec:
    """A gymnax environment by gymnax or gym id (e.g. `CartPole-v0` is CartPole-v1 capped at 200 steps)."""
    import gymnax

    gymnax_id, default_steps = _ALIASES.get(name, (name, None))
    if name not in gymnax_ids():
        valid = ", ".join(sorted(gymnax_ids()))
        raise ConfigError(f"env.name={name!r} is not a known environment. Valid names: {valid}")
    env, params = gymnax.make(gymnax_id)
    steps = read_episode_cap(max_episode_steps) or default_steps
    if steps is not None:
        params = params.replace(max_steps_in_episode=steps)
    return EnvSpec(env, params, name, read_threshold(reward_threshold, _THRESHOLDS.get(name)))
