"""JAX (gymnax-style) envs for the CLI tests, named by `_target_` from the tests folder."""

from __future__ import annotations

import jax.numpy as jnp

from conftest import Countdown


class Broken(Countdown):
    """Countdown whose rewards (`what="rewards"`) or observations (`what="observations"`) turn NaN from the
    `after`-th step of an episode on."""

    def __init__(self, what: str, after: int):
        super().__init__(length=3)
        self.what, self.after = what, after

    def step_env(self, key, state, action, params):
        obs, state, reward, done, info = super().step_env(key, state, action, params)
        broken = state.time >= self.after
        if self.what == "rewards":
            reward = jnp.where(broken, jnp.nan, reward)
        else:
            obs = jnp.where(broken, jnp.nan, obs)
        return obs, state, reward, done, info


def make_broken(what: str = "rewards", after: int = 1, **_ignored):
    """The `env` factory of the tests' broken JAX env."""
    env = Broken(what, after)
    return env, env.default_params


class IntRewards(Countdown):
    """Countdown paying int32 rewards, as bsuite's and gymnax's bandit envs do."""

    def step_env(self, key, state, action, params):
        obs, state, reward, done, info = super().step_env(key, state, action, params)
        return obs, state, reward.astype(jnp.int32), done, info
