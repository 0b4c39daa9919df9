"""Actor-critic loss terms per sample, and the reductions around them.

Each term maps per-sample arrays to per-sample losses, so the learner can take plain means (a flat env) or sums of
per-sub-step means (a structured env) of any term. `Losses` bundles the three terms the learner weights with
`policy_loss_coef`, `value_loss_coef` and `entropy_coef`; research code passes its own (`make_train(...,
losses=Losses(policy=my_policy_loss))`)."""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp


def ppo_clipped(log_prob, old_log_prob, advantage, hparams):
    """PPO's clipped surrogate: -min(r A, clip(r, 1 - eps, 1 + eps) A) with r = pi / pi_old (joint over heads)."""
    ratio = jnp.exp(log_prob - old_log_prob)
    clipped = jnp.clip(ratio, 1.0 - hparams.clip_range, 1.0 + hparams.clip_range)
    return -jnp.minimum(ratio * advantage, clipped * advantage)


def policy_gradient(log_prob, old_log_prob, advantage, hparams):
    """A2C's policy-gradient term, -w log pi(a|s) A, weighted by the importance ratio w = pi / pi_old held constant.
    On-policy w is 1 and this is Maze's -log pi A. With a lagged actor (Python envs, `runner.policy_lag=1`) the
    actions come from the previous update's policy, and w makes the gradient that of the learner's policy."""
    weight = jax.lax.stop_gradient(jnp.exp(log_prob - old_log_prob))
    return -(weight * log_prob * advantage)


def squared_error(value, target, old_value, hparams):
    """The critic's squared error against its GAE target."""
    return (value - target) ** 2


def entropy_bonus(entropy, hparams):
    """Negative entropy: minimising it keeps the policy exploring."""
    return -entropy


class Losses(NamedTuple):
    """The learner's loss terms, each per sample:
    policy(log_prob, old_log_prob, advantage, hparams), value(value, target, old_value, hparams) and
    entropy(entropy, hparams). `hparams` is the algorithm's traced hyperparameters (clip_range, ...), with those a
    term declares itself (`make_train(..., loss_hyperparams={"kl_coef": 0.1})`: `hparams.kl_coef`). A term returns
    the per-sample losses, or `(losses, {name: per-sample value})` to report auxiliary metrics by name."""

    policy: Callable = ppo_clipped
    value: Callable = squared_error
    entropy: Callable = entropy_bonus

    @classmethod
    def for_algorithm(cls, ppo: bool) -> Losses:
        """PPO's or A2C's default terms."""
        return cls(policy=ppo_clipped if ppo else policy_gradient)


def ppo_diagnostics(log_prob, old_log_prob, clip_range, valid=None):
    """Approximate KL divergence from the rollout policy and the fraction of clipped ratios (for monitoring), over
    the `valid` samples (all without)."""
    log_ratio = log_prob - old_log_prob
    ratio = jnp.exp(log_ratio)
    return (sub_step_mean((ratio - 1.0) - log_ratio, valid=valid),
            sub_step_mean((jnp.abs(ratio - 1.0) > clip_range).astype(jnp.float32), valid=valid))


def normalize(x, ids=None, n_groups: int = 0, valid=None):
    """(x - mean) / (std + 1e-8) over the whole batch, or within each sub-step's samples (`ids`: the sub-step of
    each sample, `n_groups` sub-steps), as Maze normalises advantages (per minibatch, per sub-step). With `valid`
    (bool per sample), the mean and std are those of the valid samples alone."""
    if ids is None and valid is None:
        return (x - x.mean()) / (x.std() + 1e-8)
    weights = sub_step_weights(ids, n_groups, valid)
    group = 0 if ids is None else ids
    mean = (weights * x[:, None]).sum(0)[group]
    std = jnp.sqrt((weights * ((x - mean) ** 2)[:, None]).sum(0))[group]
    return (x - mean) / (std + 1e-8)


def sub_step_weights(ids, n_groups: int, valid=None):
    """(samples, groups) weights: 1 / (valid samples of that group) where a valid sample belongs to it, else 0, so
    that `(weights * x[:, None]).sum(0)` are the per-group means of x. `ids` None: one group of every sample;
    `valid` None: every sample is valid."""
    member = jnp.ones((valid.shape[0], 1)) if ids is None else jax.nn.one_hot(ids, n_groups)
    if valid is not None:
        member = member * valid[:, None]
    return member / jnp.maximum(member.sum(0), 1.0)


def sub_step_mean(x, ids=None, n_groups: int = 0, valid=None):
    """The mean of per-sample `x` over its `valid` samples (bool per sample; None: all): over all samples (ids
    None), or per sub-step, a vector (n_groups,) whose sum is a structured env's loss (each sub-step weighs the
    same, whatever its number of samples)."""
    if ids is None and valid is None:
        return x.mean()
    means = (sub_step_weights(ids, n_groups, valid) * x[:, None]).sum(0)
    return means if ids is not None else means[0]
