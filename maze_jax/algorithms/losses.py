"""Actor-critic losses over a batch: PPO's clipped objective and A2C's policy gradient, plus value and entropy."""

from __future__ import annotations

import jax.numpy as jnp


def normalize(x):
    """Zero mean, unit std (PPO normalises advantages per minibatch)."""
    return (x - x.mean()) / (x.std() + 1e-8)


def ppo_policy_loss(log_prob, old_log_prob, advantages, clip_range):
    """Clipped surrogate loss, with approximate KL and the fraction of clipped ratios for monitoring."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = jnp.clip(ratio, 1.0 - clip_range, 1.0 + clip_range) * advantages
    loss = -jnp.minimum(unclipped, clipped).mean()
    approx_kl = ((ratio - 1.0) - log_ratio).mean()
    clip_fraction = (jnp.abs(ratio - 1.0) > clip_range).mean()
    return loss, approx_kl, clip_fraction


def a2c_policy_loss(log_prob, advantages):
    """Vanilla policy gradient loss."""
    return -(log_prob * advantages).mean()


def value_loss(values, targets):
    """Mean squared error of the critic."""
    return ((values - targets) ** 2).mean()
