"""`env=xminigrid`: XLand-MiniGrid's MiniGrid envs (partial views of the grid, (view, view, 2) uint8)."""

from __future__ import annotations

from gymnax.environments import spaces

from maze_jax.config import ConfigError
from maze_jax.envs.gymnax_env import EnvSpec, read_episode_cap, read_threshold
from maze_jax.envs.suites.base import SuiteEnv, SuiteParams, check_name, require

LAST = 2  # xminigrid's StepType.LAST


class XMiniGridEnv(SuiteEnv):
    """An xminigrid env, its state a TimeStep. The last step of an episode has discount 0 when the goal was
    reached (terminated) and 1 at the step limit (truncated)."""

    def suite_reset(self, key, inner_params):
        timestep = self.inner.reset(inner_params, key)
        return timestep.observation, timestep

    def suite_step(self, key, timestep, action, inner_params):
        timestep = self.inner.step(inner_params, timestep, action)
        last = timestep.step_type == LAST
        return timestep.observation, timestep, timestep.reward, last & (timestep.discount == 0), \
            last & (timestep.discount > 0)

    def action_space(self, params=None):
        return spaces.Discrete(int(self.inner.num_actions(self._params.inner)))


def make_xminigrid(name: str = "MiniGrid-Empty-8x8", max_episode_steps=None, reward_threshold="auto") -> EnvSpec:
    """The `env=xminigrid` factory: a MiniGrid id of xminigrid's registry; `max_episode_steps` caps episodes
    (default: the env's own `max_steps`)."""
    require("xminigrid", "xminigrid", "xminigrid")
    import xminigrid

    if str(name).startswith("XLand-"):
        raise ConfigError(f"env.name={name!r}: XLand rulesets come from benchmarks downloaded at run time, which "
                          "env=xminigrid does not load; use a MiniGrid-* id")
    ids = [i for i in xminigrid.registered_environments() if i.startswith("MiniGrid-")]
    inner, inner_params = xminigrid.make(check_name(name, ids, "xminigrid"))
    cap = read_episode_cap(max_episode_steps) or int(inner_params.max_steps)
    params = SuiteParams(cap, inner_params.replace(max_steps=cap))
    return EnvSpec(XMiniGridEnv(name, inner, params), params, name, read_threshold(reward_threshold, None))
