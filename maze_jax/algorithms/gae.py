"""Generalised advantage estimation as a reverse `lax.scan`."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def compute_gae(rewards, values, dones, last_value, gamma, gae_lambda):
    """Advantages and value targets for (steps, envs) arrays; `gamma` and `gae_lambda` are scalars or (steps, envs).

    `dones[t]` cuts the trace after step t. Truncated episodes are expected to carry the bootstrap
    `gamma * V(final observation)` in their reward already (see `actor_critic.advantages_and_targets`), so
    termination and truncation both cut here, but only a truncation keeps the value of where the episode stopped.
    """

    def step(carry, x):
        next_value, next_advantage = carry
        reward, value, done, discount, trace = x
        keep = 1.0 - done
        delta = reward + discount * next_value * keep - value
        advantage = delta + discount * trace * keep * next_advantage
        return (value, advantage), advantage

    per_step = lambda v: jnp.broadcast_to(jnp.asarray(v, jnp.float32), rewards.shape)  # noqa: E731
    init = (last_value, jnp.zeros_like(last_value))
    _, advantages = jax.lax.scan(step, init, (rewards, values, dones.astype(jnp.float32), per_step(gamma),
                                              per_step(gae_lambda)), reverse=True)
    return advantages, advantages + values
