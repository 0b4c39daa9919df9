"""Actor-critic losses over a batch: PPO's clipped objective and A2C's policy gradient, and the weights that turn
per-sample terms into a structured env's per-sub-step means."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def normalize(x):
    """Zero mean, unit std (PPO normalises advantages per minibatch)."""
    return (x - x.mean()) / (x.std() + 1e-8)


def sub_step_weights(actor_ids, n_sub_steps: int):
    """(samples, sub-steps) weights: 1 / (samples of that sub-step) where a sample belongs to it, else 0.
    `(weights * x[:, None]).sum(0)` are the per-sub-step means of x, and their sum is a structured env's loss."""
    member = jax.nn.one_hot(actor_ids, n_sub_steps)
    return member / jnp.maximum(member.sum(0), 1.0)


def ppo_policy_loss(log_prob, old_log_prob, advantages, clip_range, mean=jnp.mean):
    """Clipped surrogate loss, with approximate KL and the fraction of clipped ratios for monitoring.
    `mean` reduces the per-sample losses (a structured env sums its sub-steps' means)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = mean(-jnp.minimum(unclipped, clipped))
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    clip_fraction = (jnp.abs(ratio - 1.0) > clip_range).mean()
    return loss, approx_kl, clip_fraction


def a2c_policy_loss(log_prob, advantages, mean=jnp.mean):
    """Vanilla policy gradient loss."""
    return mean(-(log_prob * advantages))

