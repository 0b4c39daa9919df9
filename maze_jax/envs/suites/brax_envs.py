"""`env=brax`: Brax's continuous-control envs (ant, halfcheetah, humanoid, ...): a Box action in [-1, 1]."""

from __future__ import annotations

import contextlib
import io

import jax.numpy as jnp
from gymnax.environments import spaces

from maze_jax.config import ConfigError, first_line
from maze_jax.envs.gymnax_env import EnvSpec, read_episode_cap, read_threshold
from maze_jax.envs.suites.base import SuiteEnv, SuiteParams, check_name, require

EPISODE_LENGTH = 1000  # Brax's training default


class BraxEnv(SuiteEnv):
    """A Brax env: `reset(key) -> State`, `step(State, action) -> State`. Brax's `done` (the body fell) terminates
    an episode; the step cap truncates it."""

    def suite_reset(self, key, inner_params):
        state = self.inner.reset(key)
        return state.obs, state

    def suite_step(self, key, state, action, inner_params):
        state = self.inner.step(state, action)
        return state.obs, state, state.reward, state.done > 0.5, jnp.bool_(False)

    def action_space(self, params=None):
        return spaces.Box(-1.0, 1.0, (int(self.inner.action_size),), jnp.float32)


def make_brax(name: str = "ant", backend: str = "generalized", max_episode_steps=None,
              reward_threshold="auto") -> EnvSpec:
    """The `env=brax` factory: a Brax env id and physics `backend` (generalized, positional, spring or mjx);
    `max_episode_steps` caps episodes (default 1,000, as Brax trains)."""
    require("brax", "brax", "brax")
    with contextlib.redirect_stdout(io.StringIO()):  # MuJoCo's optional GPU backend reports its absence on import
        from brax import envs

    check_name(name, envs._envs, "brax")
    try:
        inner = envs.get_environment(name, backend=backend)
    except (TypeError, ValueError, KeyError) as error:
        raise ConfigError(f"env={name} backend={backend!r} cannot be built: {first_line(error)}") from None
    params = SuiteParams(read_episode_cap(max_episode_steps) or EPISODE_LENGTH)
    return EnvSpec(BraxEnv(name, inner, params), params, name, read_threshold(reward_threshold, None))
