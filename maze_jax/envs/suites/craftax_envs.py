"""`env=craftax`: Craftax and Craftax-Classic (symbolic or pixel observations) as gymnax-style envs."""

from __future__ import annotations

from gymnax.environments import spaces

from maze_jax.envs.gymnax_env import EnvSpec, read_episode_cap, read_threshold
from maze_jax.envs.suites.base import SuiteEnv, SuiteParams, check_name, require

NAMES = ("Craftax-Symbolic-v1", "Craftax-Pixels-v1", "Craftax-Classic-Symbolic-v1", "Craftax-Classic-Pixels-v1")


class CraftaxEnv(SuiteEnv):
    """A Craftax env without its own auto-reset (gymnax's adds it). An episode ends when the player dies
    (terminated) or at the step limit (truncated, also Craftax's own `max_timesteps`, set to the same cap)."""

    def suite_reset(self, key, inner_params):
        return self.inner.reset_env(key, inner_params)

    def suite_step(self, key, inner_state, action, inner_params):
        obs, state, reward, done, _ = self.inner.step_env(key, inner_state, action, inner_params)
        timed_out = state.timestep >= inner_params.max_timesteps
        return obs, state, reward, done & ~timed_out, timed_out

    def action_space(self, params=None):
        return spaces.Discrete(int(self.inner.num_actions))


def make_craftax(name: str = "Craftax-Symbolic-v1", max_episode_steps=None, reward_threshold="auto") -> EnvSpec:
    """The `env=craftax` factory: `name` one of NAMES; `max_episode_steps` caps episodes (default: Craftax's own,
    100,000 steps for Craftax and 10,000 for Classic)."""
    require("craftax", "craftax", "craftax")
    from craftax.craftax_env import make_craftax_env_from_name

    inner = make_craftax_env_from_name(check_name(name, NAMES, "craftax"), auto_reset=False)
    cap = read_episode_cap(max_episode_steps) or int(inner.default_params.max_timesteps)
    params = SuiteParams(cap, inner.default_params.replace(max_timesteps=cap))
    return EnvSpec(CraftaxEnv(name, inner, params), params, name, read_threshold(reward_threshold, None))
