"""Policy and critic together: a critic network of its own, or a value output on the policy's network."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax

from maze_jax.config import ConfigError, read
from maze_jax.envs.structured import sub_steps
from maze_jax.models.policy import Policy, build_networks, build_policy, sub_step_config
from maze_jax.models.recurrent import batch_memory, call_network, is_recurrent, unroll_networks


@dataclass(frozen=True)
class ActorCritic:
    """`params = {"policy": ..., "critic": ...}` ("critic" absent when the torso is shared).

    With recurrent networks, each env's memory is `{"policy": ..., "critic": ...}` (leading env axis; `()` for a
    network without one); without, it is `()` throughout."""

    policy: Policy
    critic: Any = None  # flax module with one output (per sub-step), or None for a shared torso

    @property
    def recurrent(self) -> bool:
        return self.policy.recurrent or is_recurrent(self.critic)

    def initial_memory(self, n: int):
        """The memories of `n` envs at their episodes' start."""
        if not self.recurrent:
            return ()
        critic = batch_memory(self.critic.initial_memory(), n) if is_recurrent(self.critic) else ()
        return {"policy": self.policy.initial_memory(n), "critic": critic}

    def init(self, key, obs_example) -> dict:
        policy_key, critic_key = jax.random.split(key)
        params = {"policy": self.policy.init(policy_key, obs_example)}
        if self.critic is not None:
            memory = (self.critic.initial_memory(),) if is_recurrent(self.critic) else ()
            params["critic"] = self.critic.init(critic_key, obs_example, *memory)
        return params

    def step(self, params, obs, memory):
        """Distribution parameters, values and memories after them, for a batch of observations and their envs'
        memories."""
        parts = memory or {"policy": (), "critic": ()}
        net = lambda network: jax.vmap(functools.partial(call_network, network), in_axes=(None, 0, 0))  # noqa: E731
        out, policy_memory = net(self.policy.network)(params["policy"], obs, parts["policy"])
        dist_out = jax.vmap(self.policy.head)(out, obs)
        if self.critic is None:
            value, critic_memory = out[..., -1], ()
        else:
            value, critic_memory = net(self.critic)(params["critic"], obs, parts["critic"])
            value = value[..., 0]
        return dist_out, value, {"policy": policy_memory, "critic": critic_memory} if memory else ()

    def value_step(self, params, obs, memory):
        """Values and memories after them, for a batch of observations and their envs' memories, without the
        policy's outputs where the critic is a network of its own: then only the critic's memory moves on (the
        policy's is passed through as it came)."""
        if self.critic is None:
            return self.step(params, obs, memory)[1:]
        net = jax.vmap(functools.partial(call_network, self.critic), in_axes=(None, 0, 0))
        value, critic_memory = net(params["critic"], obs, memory["critic"] if memory else ())
        return value[..., 0], {**memory, "critic": critic_memory} if memory else ()

    def __call__(self, params, obs):
        """Distribution parameters and values for a batch of observations (recurrent: each its episode's first)."""
        return self.step(params, obs, self.initial_memory(jax.tree.leaves(obs)[0].shape[0]))[:2]

    def value(self, params, obs):
        return self(params, obs)[1]

    def unroll(self, params, obs, starts, memory):
        """Distribution parameters and values of time-major observations (T, B, ...), the memories starting from
        `memory` (B, ...) and set to zeros where `starts` (T, B) marks an episode's first step. Also returns the
        memory after each step, (T, B, ...), before any such reset (`unroll_networks`: only the cells run step by
        step)."""
        networks = {"policy": self.policy.network, **({} if self.critic is None else {"critic": self.critic})}
        outputs, memories = unroll_networks(networks, params, obs, starts,
                                            {name: memory[name] for name in networks})
        out = outputs["policy"]
        dist_out = jax.vmap(jax.vmap(self.policy.head))(out, obs)
        value = out[..., -1] if self.critic is None else outputs["critic"][..., 0]
        return dist_out, value, {"policy": memories["policy"], "critic": memories.get("critic", ())}


def build_actor_critic(model_cfg: Any, critic_cfg: Any, env_spec) -> ActorCritic:
    """From the `model` and `critic` groups; a null critic means a separate critic shaped like the model
    (for a structured env, one per sub-step, from the model's own config rather than its per-sub-step networks)."""
    critic_cfg = critic_cfg or {}  # model_cfg may be a flax module (see instantiate_network)
    if critic_cfg.get("state_action"):
        raise ConfigError("this critic is a state-action critic Q(s, a), which SAC learns; this algorithm learns a "
                          "state critic V(s): critic=template_state (or separate, or shared)")
    shared = read(critic_cfg, "shared", bool, "critic") if "shared" in critic_cfg else False
    policy = build_policy(model_cfg, env_spec, shared_value=shared)
    if shared:
        return ActorCritic(policy)
    overrides = {k: v for k, v in dict(critic_cfg).items() if k != "shared" and v is not None}
    critic_model = sub_step_config(model_cfg, None)  # the model's own config, not its per-sub-step networks
    n_critics = max(len(sub_steps(env_spec.env)), 1)
    return ActorCritic(policy, build_networks(critic_model, env_spec.env, [1] * n_critics, "critic",
                                              pick_by_actor=True, optional={"output_scale": 1.0}, **overrides))
