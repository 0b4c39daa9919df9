"""`env=jumanji`: Jumanji's combinatorial and grid envs, their structured observations flattened to a dict and
their action masks mapped to maze_jax's masks.

Actions: a Discrete action keeps its mask (`action_mask`, shape (n,)). A MultiDiscrete action whose mask covers
every combination (shape `num_values`, e.g. BinPack's (ems, items)) becomes one Discrete choice over the
combinations, so the mask stays exact; the adapter unravels the choice for the env. Any other MultiDiscrete action
is one head per dimension, and a continuous (bounded) action is a Box."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
from gymnax.environments import spaces

from maze_jax.config import ConfigError, first_line
from maze_jax.envs.gymnax_env import EnvSpec, read_episode_cap, read_threshold
from maze_jax.envs.spaces import MultiDiscrete
from maze_jax.envs.suites.base import SuiteEnv, SuiteParams, check_name, flat_observation, require

MASK = "action_mask"
LAST = 2  # dm_env's StepType.LAST, which Jumanji uses


class JumanjiEnv(SuiteEnv):
    """A Jumanji env: `reset(key) -> (state, timestep)`, `step(state, action) -> (state, timestep)`. The last step
    of an episode has discount 0 when the task ended (terminated) and 1 at Jumanji's time limit (truncated)."""

    def __init__(self, name: str, inner, params: SuiteParams):
        super().__init__(name, inner, params)
        spec = inner.action_spec
        self.nvec = tuple(int(n) for n in np.ravel(spec.num_values)) if hasattr(spec, "num_values") else None
        mask = getattr(inner.observation_spec, MASK, None)
        mask_shape = tuple(mask.shape) if mask is not None else None
        self.discrete = self.nvec is not None and np.ndim(spec.num_values) == 0
        # MultiDiscrete with a mask over every combination: one Discrete choice over the combinations
        self.joint = self.nvec is not None and np.ndim(spec.num_values) == 1 and mask_shape == self.nvec
        self.action_masks = {"action": MASK} if self.joint or (self.discrete and mask_shape == self.nvec) else {}

    def observation(self, timestep_obs):
        obs = flat_observation(timestep_obs)
        if self.joint:
            obs = {**obs, MASK: obs[MASK].reshape(-1)}
        return obs

    def suite_reset(self, key, inner_params):
        state, timestep = self.inner.reset(key)
        return self.observation(timestep.observation), state

    def suite_step(self, key, state, action, inner_params):
        if self.joint:
            action = jnp.stack(jnp.unravel_index(action, self.nvec)).astype(jnp.int32)
        state, timestep = self.inner.step(state, action)
        last = timestep.step_type == LAST
        return self.observation(timestep.observation), state, timestep.reward, last & (timestep.discount == 0), \
            last & (timestep.discount > 0)

    def action_space(self, params=None):
        spec = self.inner.action_spec
        if self.nvec is not None:
            if self.joint or self.discrete:
                return spaces.Discrete(math.prod(self.nvec))
            return MultiDiscrete(self.nvec)
        if hasattr(spec, "minimum") and np.issubdtype(spec.dtype, np.floating):
            return spaces.Box(np.asarray(spec.minimum, np.float32), np.asarray(spec.maximum, np.float32),
                              tuple(spec.shape), jnp.float32)
        raise ConfigError(f"env.name={self.name!r}: its action spec {spec} is not supported")


def make_jumanji(name: str = "Snake-v1", kwargs: dict | None = None, max_episode_steps=None,
                 reward_threshold="auto") -> EnvSpec:
    """The `env=jumanji` factory: a registered Jumanji id, `kwargs` for its constructor; `max_episode_steps` caps
    episodes (default: the env's `time_limit`, else 1,000 steps)."""
    require("jumanji", "jumanji", "jumanji")
    import jumanji

    check_name(name, jumanji.registered_environments(), "jumanji")
    try:
        inner = jumanji.make(name, **(kwargs or {}))
    except TypeError as error:
        raise ConfigError(f"env.kwargs do not fit {name}: {first_line(error)}") from None
    cap = read_episode_cap(max_episode_steps) or int(getattr(inner, "time_limit", None) or 1000)
    params = SuiteParams(cap)
    return EnvSpec(JumanjiEnv(name, inner, params), params, name, read_threshold(reward_threshold, None))
