"""Policy and critic together: a critic network of its own, or a value output on the policy's network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax

from maze_jax.config import read
from maze_jax.envs.structured import sub_steps
from maze_jax.models.policy import Policy, build_networks, build_policy, sub_step_config


@dataclass(frozen=True)
class ActorCritic:
    """`params = {"policy": ..., "critic": ...}` ("critic" absent when the torso is shared)."""

    policy: Policy
    critic: Any = None  # flax module with one output (per sub-step), or None for a shared torso

    def init(self, key, obs_example) -> dict:
        policy_key, critic_key = jax.random.split(key)
        params = {"policy": self.policy.init(policy_key, obs_example)}
        if self.critic is not None:
            params["critic"] = self.critic.init(critic_key, obs_example)
        return params

    def __call__(self, params, obs):
        """Distribution parameters and values for a batch of observations."""
        out = jax.vmap(self.policy.network.apply, in_axes=(None, 0))(params["policy"], obs)
        dist_out = jax.vmap(self.policy.head)(out, obs)
        if self.critic is None:
            return dist_out, out[..., -1]
        return dist_out, jax.vmap(self.critic.apply, in_axes=(None, 0))(params["critic"], obs)[..., 0]

    def value(self, params, obs):
        return self(params, obs)[1]


def build_actor_critic(model_cfg: Any, critic_cfg: Any, env_spec) -> ActorCritic:
    """From the `model` and `critic` groups; a null critic means a separate critic shaped like the model
    (for a structured env, one per sub-step, from the model's own config rather than its per-sub-step networks)."""
    critic_cfg = critic_cfg or {}  # model_cfg may be a flax module (see instantiate_network)
    shared = read(critic_cfg, "shared", bool, "critic") if "shared" in critic_cfg else False
    policy = build_policy(model_cfg, env_spec, shared_value=shared)
    if shared:
        return ActorCritic(policy)
    overrides = {k: v for k, v in dict(critic_cfg).items() if k != "shared" and v is not None}
    critic_model = sub_step_config(model_cfg, None)  # the model's own config, not its per-sub-step networks
    n_critics = max(len(sub_steps(env_spec.env)), 1)
    return ActorCritic(policy, build_networks(critic_model, env_spec.env, [1] * n_critics, "critic",
                                              pick_by_actor=True, optional={"output_scale": 1.0}, **overrides))
