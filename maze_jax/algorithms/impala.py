"""IMPALA (Maze's `algorithm=impala`): an actor-critic learner whose actors may lag it, corrected by V-trace.

Actors record the log-probability of every action they took (`Experience.log_prob`, the behaviour policy). The
learner recomputes its own log-probabilities and values for the whole rollout and corrects the returns with V-trace
(Espeholt et al. 2018): truncated importance weights rho = min(rho_bar, pi / mu), trace weights c = min(1, pi / mu).
It follows the paper where Maze deviates: every step of a rollout is learned from and the bootstrap is the value of
the observation after the last step (Maze drops the last step); a time-limit truncation bootstraps from the value
of the final observation (Maze treats it as terminal). With the host collector's `runner.policy_lag=1` or Ray
workers the actors are one update behind, which V-trace corrects; on JAX envs acting is on-policy (rho = 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from maze_jax.algorithms import Algorithm, hyperparams_struct, traced
from maze_jax.algorithms.actor_critic import OPTIMIZER, ACState, Trajectory, batch_values, explore, init, \
    learner_metrics
from maze_jax.algorithms.metrics import action_statistics
from maze_jax.algorithms.optim import clip_by_global_norm, scale_by_learning_rate
from maze_jax.config import ConfigError
from maze_jax.models import ActorCritic


@dataclass(frozen=True)
class ImpalaConfig:
    """IMPALA settings with Maze's names. Sizes are static; the fields declared `traced` are the default
    hyperparameters, which live traced in the state (`ImpalaHyperparams`)."""

    n_envs: int = 8
    """Trajectories per update (Maze's `actors_batch_size`): the envs a rollout steps."""
    n_rollout_steps: int = 100
    """Steps per trajectory."""
    epoch_length: int = 25
    """Updates per epoch."""
    n_eval_episodes: int = 8
    deterministic_eval: bool = True
    n_epochs: int = 0
    """Epochs to train; 0 = until stopped."""
    patience: int = 15
    lr: float = traced(0.0005)
    gamma: float = traced(0.98)
    policy_loss_coef: float = traced(1.0)
    value_loss_coef: float = traced(0.5)
    entropy_coef: float = traced(0.01)
    max_grad_norm: float = traced(0.0)
    """Global gradient-norm clip; 0 = off."""
    vtrace_clip_rho_threshold: float = traced(1.0)
    """rho_bar, the clip of the importance weights in the value targets; inf = none (Maze's null)."""
    vtrace_clip_pg_rho_threshold: float = traced(1.0)
    """The clip of the importance weights in the policy gradient; inf = none (Maze's null)."""
    critic_burn_in_epochs: int = traced(0)
    """First epochs train the critic alone (value weight 1, policy and entropy weights 0, as in Maze)."""
    mesh: Any = None
    """A jax.sharding.Mesh (None: one device); set by the shell, not a config key."""

    name = "impala"

    def hyperparams(self) -> ImpalaHyperparams:
        return ImpalaHyperparams.of(self)


ImpalaHyperparams = hyperparams_struct(ImpalaConfig, "ImpalaHyperparams")


def vtrace(values, bootstrap, rewards, discounts, log_rhos, clip_rho, clip_pg_rho):
    """V-trace targets and policy-gradient advantages, time-major (T, B) inputs, `bootstrap` (B,).

    vs_t = V_t + sum_{s>=t} (prod_{t<=i<s} gamma_i c_i) delta_s, delta_s = rho_s (r_s + gamma_s V_{s+1} - V_s),
    with rho = min(clip_rho, pi/mu), c = min(1, pi/mu); advantage_t = min(clip_pg_rho, pi/mu) (r_t + gamma_t
    vs_{t+1} - V_t). Both without gradient."""
    rhos = jnp.exp(log_rhos)
    clipped = jnp.minimum(clip_rho, rhos)
    cs = jnp.minimum(1.0, rhos)
    values_next = jnp.concatenate([values[1:], bootstrap[None]])
    deltas = clipped * (rewards + discounts * values_next - values)

    def backwards(acc, inputs):
        delta, discount, c = inputs
        acc = delta + discount * c * acc
        return acc, acc

    _, corrections = jax.lax.scan(backwards, jnp.zeros_like(bootstrap), (deltas, discounts, cs), reverse=True)
    vs = values + corrections
    vs_next = jnp.concatenate([vs[1:], bootstrap[None]])
    advantages = jnp.minimum(clip_pg_rho, rhos) * (rewards + discounts * vs_next - values)
    return jax.lax.stop_gradient(vs), jax.lax.stop_gradient(advantages)


def loss(params, trajectory: Trajectory, hparams: ImpalaHyperparams, weights: dict, model: ActorCritic):
    """The weighted loss of a rollout, with its statistics: V-trace from the learner's own values and
    log-probabilities against the actors' (behaviour) log-probabilities."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    shape = trajectory.reward.shape
    out, values = model(params, jax.tree.map(flat, trajectory.obs))
    values = values.reshape(shape)
    dist = model.policy.dist
    log_prob = dist.log_prob(out, jax.tree.map(flat, trajectory.action)).reshape(shape)
    final_value = jax.lax.stop_gradient(batch_values(model, params, trajectory.final_obs))
    bootstrap = jax.lax.stop_gradient(model.value(params, trajectory.last_obs))
    dones = trajectory.terminated | trajectory.truncated
    discounts = jnp.where(dones, 0.0, hparams.gamma)
    rewards = trajectory.reward + jnp.where(trajectory.truncated & ~trajectory.terminated,
                                            hparams.gamma * final_value, 0.0)
    log_rhos = jax.lax.stop_gradient(log_prob) - trajectory.log_prob
    vs, advantages = vtrace(jax.lax.stop_gradient(values), bootstrap, rewards, discounts, log_rhos,
                            hparams.vtrace_clip_rho_threshold, hparams.vtrace_clip_pg_rho_threshold)
    policy_loss = -jnp.mean(log_prob * advantages)
    value_loss = 0.5 * jnp.mean((values - vs) ** 2)
    entropy = jnp.mean(dist.entropy(out))
    total = weights["policy"] * policy_loss + weights["value"] * value_loss - weights["entropy"] * entropy
    return total, {"policy_loss": policy_loss, "value_loss": value_loss, "entropy": entropy,
                   "critic_value": jnp.mean(values), "discounted_returns": jnp.mean(vs),
                   "importance_weight": jnp.mean(jnp.exp(log_rhos))}


def update(state: ACState, trajectory: Trajectory, config: ImpalaConfig, model: ActorCritic) -> tuple[ACState, dict]:
    """One learner update on a rollout: V-trace, then one gradient step. Returns the state and the update's
    statistics by plain name, with the rollout's action statistics."""
    hparams = state.hparams
    burn_in = state.step < hparams.critic_burn_in_epochs * config.epoch_length
    weights = {"policy": jnp.where(burn_in, 0.0, hparams.policy_loss_coef),
               "value": jnp.where(burn_in, 1.0, hparams.value_loss_coef),
               "entropy": jnp.where(burn_in, 0.0, hparams.entropy_coef)}
    grads, info = jax.grad(loss, has_aux=True)(state.params, trajectory, hparams, weights, model)
    grads, info["grad_norm"] = clip_by_global_norm(grads, hparams.max_grad_norm)
    updates, opt_state = OPTIMIZER.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, scale_by_learning_rate(updates, hparams.lr))
    state = state.replace(params=params, opt_state=opt_state, step=state.step + 1)
    metrics = learner_metrics(info, hparams, (), ppo=False)
    metrics.update({name: info[name] for name in ("critic_value", "discounted_returns", "importance_weight")})
    return state, {**metrics, **action_statistics(model.policy.dist, trajectory.action)}


def make_impala(config: ImpalaConfig, model: ActorCritic, obs_example) -> Algorithm:
    """IMPALA with its static settings bound."""
    if model.recurrent:
        raise ConfigError("IMPALA here takes a feed-forward model; for a recurrent one use algorithm=ppo")
    return Algorithm(
        name=config.name,
        config=config,
        policy=model.policy,
        hyperparams=config.hyperparams(),
        init=lambda key, hparams: init(key, hparams, model, obs_example),
        update=functools.partial(update, config=config, model=model),
        explore=functools.partial(explore, model),
    )
