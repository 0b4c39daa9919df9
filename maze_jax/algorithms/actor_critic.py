"""PPO and A2C (Maze's actor-critic trainers) as pure functions: `init`, `explore` and the learner's `update`.

The learner is a function of a time-major trajectory and never sees an environment: whatever collected the
trajectory (the jitted scan over JAX envs, or the host collector that steps Python envs) hands it the same
`Trajectory`. One update computes GAE with a reverse scan, then optimises: PPO runs `n_optimization_epochs` over
shuffled minibatches of `batch_size` samples, A2C takes one gradient step on the whole rollout. Hyperparameters are
one traced struct (`ACHyperparams`), so `jax.vmap` over states trains several seeds or settings in one program, and
the loss terms are parameters (`Losses`), so research code swaps them without copying the learner.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from maze_jax.algorithms import Algorithm, hyperparams_struct, traced
from maze_jax.algorithms.gae import compute_gae
from maze_jax.algorithms.losses import Losses, normalize, ppo_diagnostics, sub_step_mean
from maze_jax.algorithms.metrics import action_statistics
from maze_jax.algorithms.optim import clip_by_global_norm, global_norm, scale_by_learning_rate
from maze_jax.config import ConfigError
from maze_jax.envs.episodes import reset_memory
from maze_jax.models import ActorCritic
from maze_jax.models.recurrent import is_recurrent

DEFAULT_LR = {"ppo": 0.00025, "a2c": 0.0005}
"""Maze's learning rates: PPO's and A2C's defaults differ, their other shared defaults do not."""

LONGEST_DEFAULT_SEQUENCE = 16
"""A recurrent model's replayed sequences are at most this long unless `sequence_length` says otherwise: each step
of a sequence is one more step of the learner's scan, while the sequences of a minibatch run side by side."""


@dataclass(frozen=True)
class ActorCriticConfig:
    """PPO and A2C settings with Maze's names. Sizes are static (they shape the compiled program); the fields
    declared `traced` are the default hyperparameters, which live traced in the state (`ACHyperparams`)."""

    ppo: bool = True
    """PPO (clipped objective, minibatches) or A2C (one gradient step per rollout)."""
    n_envs: int = 16
    """Parallel environments of a rollout (Maze's `runner.concurrency`)."""
    n_rollout_steps: int = 100
    """Steps per env per update."""
    epoch_length: int = 25
    """Updates per epoch; with JAX envs one epoch is one jitted call."""
    n_optimization_epochs: int = 4
    """PPO: passes over the rollout per update."""
    batch_size: int = 100
    """PPO: minibatch size in samples; divides n_envs * n_rollout_steps."""
    n_eval_episodes: int = 8
    """Evaluation episodes after every epoch (Maze's `rollout_evaluator.n_episodes`)."""
    deterministic_eval: bool = True
    """Evaluate the distribution's mode (Maze's `rollout_evaluator.deterministic`)."""
    n_epochs: int = 100
    """Epochs to train; 0 = until stopped."""
    patience: int = 15
    """Stop once more epochs than this pass without a better evaluation (as Maze); 0 = never."""
    lr: float | None = traced(None)
    """Adam's learning rate; None = the algorithm's default, as Maze's configs set it (`DEFAULT_LR`)."""
    gamma: float = traced(0.98)
    """Discount per env step (a structured env's sub-steps share their step's discount)."""
    gae_lambda: float = traced(1.0)
    """GAE's lambda, per env step like gamma."""
    policy_loss_coef: float = traced(1.0)
    value_loss_coef: float = traced(0.5)
    entropy_coef: float = traced(0.00025)
    max_grad_norm: float = traced(0.0)
    """Global gradient-norm clip; 0 = off."""
    clip_range: float = traced(0.2)
    """PPO's ratio clip."""
    sequence_length: int | None = None
    """Recurrent models: steps of each sequence the learner replays from the memory its env acted with
    (truncated backpropagation through time); it divides n_rollout_steps and PPO's batch_size. None = the longest
    such length up to `LONGEST_DEFAULT_SEQUENCE`; n_rollout_steps = whole rollouts."""
    critic_burn_in_epochs: int = traced(0)
    """First epochs train the critic alone (value loss weight 1, policy and entropy weights 0, as in Maze)."""
    mesh: Any = None
    """A jax.sharding.Mesh to split the envs over (None: one device); set by the shell, not a config key."""

    def __post_init__(self):
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.name])

    @property
    def name(self) -> str:
        return "ppo" if self.ppo else "a2c"

    @property
    def sequence_steps(self) -> int:
        """`sequence_length`, or its default: the longest length up to `LONGEST_DEFAULT_SEQUENCE` that divides
        n_rollout_steps (and PPO's batch_size)."""
        if self.sequence_length is not None:
            return self.sequence_length
        divides = lambda n: self.n_rollout_steps % n == 0 and (not self.ppo or self.batch_size % n == 0)  # noqa: E731
        return max(n for n in range(1, LONGEST_DEFAULT_SEQUENCE + 1) if divides(n))

    @property
    def n_minibatches(self) -> int:
        return self.n_envs * self.n_rollout_steps // self.batch_size if self.ppo else 1

    def hyperparams(self) -> ACHyperparams:
        """The traced hyperparameters this config sets."""
        return ACHyperparams.of(self)


ACHyperparams = hyperparams_struct(ActorCriticConfig, "ACHyperparams")


class ACState(struct.PyTreeNode):
    """The learner: networks ({"policy", "critic"}), Adam's moments, RNG key, updates done, hyperparameters."""

    params: Any
    opt_state: Any
    key: jax.Array
    step: jax.Array
    hparams: ACHyperparams


class Experience(NamedTuple):
    """What acting records besides the env action: the distribution's sample (before clipping to the action
    space), its log-probability, the critic's value of the observation and the memory the env acted with (a
    recurrent model's; `()` without one), so that the learner replays from what the actors had."""

    action: Any
    log_prob: jax.Array
    value: jax.Array
    memory: Any = ()


class Trajectory(NamedTuple):
    """A rollout, time-major: leaves (T steps, B envs, ...), except `last_obs` and `memory` (B, ...).

    `final_obs[t]` is the observation step t ended in, before any auto-reset: where `truncated[t]` the learner
    bootstraps from its value. `last_obs` is the observation after the last step (the rollout's bootstrap).
    `memory` (T, B, ...) is a recurrent model's memory that each env acted with at each step, zeros at an
    episode's first step (`()` without one): the learner replays sequences from it. `valid` (T, B) says which steps
    are transitions (`()`: all): envpool's jitted rollouts mark False the step that only resets an env whose episode
    ended on the step before (its action ignored, its reward 0), and a learner that honours it
    (`Algorithm.masks_steps`) leaves such steps out of its losses and statistics."""

    obs: Any
    action: Any
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: Any
    last_obs: Any
    memory: Any = ()
    valid: Any = ()


OPTIMIZER = optax.scale_by_adam()  # the learning rate is applied from the traced hyperparameters


def init(key, hparams: ACHyperparams, model: ActorCritic, obs_example) -> ACState:
    """A fresh learner: networks initialised from `key` for observations like `obs_example` (one, unbatched)."""
    key, init_key = jax.random.split(key)
    params = model.init(init_key, obs_example)
    return ACState(params, OPTIMIZER.init(params), key, jnp.int32(0), hparams)


def explore(model: ActorCritic, params, obs, key, memory=()) -> tuple[Any, Experience, Any]:
    """Samples actions for a batch of observations and their envs' memories: (env actions, Experience, memories
    after them)."""
    out, value, after = model.step(params, obs, memory)
    action = model.policy.dist.sample(key, out)
    experience = Experience(action, model.policy.dist.log_prob(out, action), value, memory)
    return model.policy.dist.to_env(action), experience, after


def shuffled_minibatches(key, batch, n_minibatches: int):
    """`batch` (leading axis = samples, or envs' sequences) permuted and split into `n_minibatches` equal
    minibatches (new leading axis)."""
    n_samples = jax.tree.leaves(batch)[0].shape[0]
    order = jax.random.permutation(key, n_samples)
    return jax.tree.map(lambda x: x[order].reshape((n_minibatches, -1) + x.shape[1:]), batch)


def batch_values(model: ActorCritic, params, obs):
    """Critic values of time-major observations (T, B, ...) -> (T, B)."""
    leading = jax.tree.leaves(obs)[0].shape[:2]
    return model.value(params, jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), obs)).reshape(leading)


def step_ends(trajectory: Trajectory, sub_step_ids: Callable | None):
    """(T, B): whether a transition completes a whole env step: always in a flat env; in a structured env when
    the next observation's acting sub-step is the first again, or the episode ended."""
    dones = trajectory.terminated | trajectory.truncated
    if sub_step_ids is None:
        return jnp.ones_like(dones)
    ids = jax.vmap(sub_step_ids)(trajectory.obs)
    next_ids = jnp.concatenate([ids[1:], sub_step_ids(trajectory.last_obs)[None]])
    return dones | (next_ids == 0)


def episode_starts(trajectory: Trajectory) -> jax.Array:
    """(T, B): whether step t is an episode's first within the rollout (the step after an end)."""
    dones = trajectory.terminated | trajectory.truncated
    return jnp.concatenate([jnp.zeros_like(dones[:1]), dones[:-1]])


def critic_values(params, trajectory: Trajectory, model: ActorCritic):
    """The critic's values under `params` of the observations (T, B), of the final observations (T, B) and of the
    last one (B,). GAE takes all three from the learner's parameters, as Maze does: with a lagged actor
    (`runner.policy_lag=1`), the values it stored come from the previous update's critic. A recurrent model values
    each step with the memory its env acted with, and a final observation with the memory after its step: every
    step at once, without replaying the rollout step by step."""
    if not is_recurrent(model):
        both = batch_values(model, params, jax.tree.map(lambda o, f: jnp.concatenate([o, f]), trajectory.obs,
                                                        trajectory.final_obs))
        horizon = trajectory.reward.shape[0]
        return both[:horizon], both[horizon:], model.value(params, trajectory.last_obs)
    shape = trajectory.reward.shape
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    values, after = model.value_step(params, jax.tree.map(flat, trajectory.obs), jax.tree.map(flat, trajectory.memory))
    final_value = model.value_step(params, jax.tree.map(flat, trajectory.final_obs), after)[0]
    last_memory = reset_memory(jax.tree.map(lambda m: m.reshape(shape + m.shape[1:])[-1], after),
                               trajectory.terminated[-1] | trajectory.truncated[-1])
    return values.reshape(shape), final_value.reshape(shape), model.value_step(params, trajectory.last_obs,
                                                                               last_memory)[0]


def sequences(trajectory: Trajectory, batch: dict, length: int) -> dict:
    """A recurrent model's samples (time-major (T, B, ...) in `batch`) as sequences of `length` steps: (B * T /
    length, length, ...), env by env, each with the memory its env acted with at its first step (`memory`) and
    whether each step starts an episode (`start`). The learner replays each sequence from that memory
    (truncated backpropagation through time: no gradient flows into an earlier sequence)."""
    def cut(x):  # (T, B, ...) -> (B * T / length, length, ...)
        x = jnp.swapaxes(x, 0, 1)
        return x.reshape((-1, length) + x.shape[2:])

    cut_batch = jax.tree.map(cut, {**batch, "start": episode_starts(trajectory)})
    cut_batch["memory"] = jax.tree.map(lambda m: cut(m)[:, 0], trajectory.memory)
    return cut_batch


def advantages_and_targets(params, trajectory: Trajectory, hparams: ACHyperparams, model: ActorCritic,
                           sub_step_ids: Callable | None = None):
    """GAE advantages, value targets and the values they start from, (T, B) each, with one critic: `params`'s
    (`critic_values`). A truncated episode bootstraps from the value of its final observation; a terminated one
    does not. Gamma and lambda apply once per whole env step: the sub-steps of a structured env's step share its
    discount."""
    values, final_value, last_value = critic_values(params, trajectory, model)
    ends = step_ends(trajectory, sub_step_ids)
    gamma, gae_lambda = jnp.where(ends, hparams.gamma, 1.0), jnp.where(ends, hparams.gae_lambda, 1.0)
    bootstrap = jnp.where(trajectory.truncated & ~trajectory.terminated, gamma * final_value, 0.0)
    dones = trajectory.terminated | trajectory.truncated
    advantages, targets = compute_gae(trajectory.reward + bootstrap, values, dones, last_value, gamma, gae_lambda)
    return advantages, targets, values


def forward(model: ActorCritic, params, batch: dict):
    """Distribution parameters and values of a minibatch, and the minibatch as samples: a feed-forward model's
    minibatch is samples already; a recurrent model's is sequences (n, length, ...) with each one's first `memory`
    (`sequences`), replayed step by step, then flattened to samples."""
    if not is_recurrent(model):
        return *model(params, batch["obs"]), batch
    steps = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), {k: v for k, v in batch.items() if k != "memory"})
    out, values, _ = model.unroll(params, steps["obs"], steps["start"], batch["memory"])
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return flat(out), flat(values), jax.tree.map(flat, steps)


def loss(params, batch: dict, hparams: ACHyperparams, weights: dict, model: ActorCritic, losses: Losses,
         sub_step_ids, n_sub_steps: int, ppo: bool):
    """The weighted loss of a minibatch and its statistics. Advantages are normalised (per sub-step in a
    structured env, whose terms are sums over its sub-steps of per-sub-step means; its statistics are reported per
    sub-step too). A loss term may return `(per-sample loss, {name: per-sample value})`: its auxiliary metrics are
    averaged as the term is and reported by name."""
    out, values, batch = forward(model, params, batch)
    dist = model.policy.dist
    log_prob = dist.log_prob(out, batch["action"])
    ids = None if sub_step_ids is None else sub_step_ids(batch["obs"])
    valid = batch.get("valid")  # None: every sample is a transition
    mean = functools.partial(sub_step_mean, ids=ids, n_groups=n_sub_steps, valid=valid)
    advantage = normalize(batch["advantage"], ids, n_sub_steps, valid)  # per sub-step (as Maze does), valid ones
    entropy = dist.entropy(out)
    terms, aux = {}, {}
    for name, term in (("policy_loss", losses.policy(log_prob, batch["log_prob"], advantage, hparams)),
                       ("value_loss", losses.value(values, batch["target"], batch["value"], hparams)),
                       ("entropy_loss", losses.entropy(entropy, hparams))):
        terms[name], more = term if isinstance(term, tuple) else (term, {})
        aux.update(more)
    terms["entropy"] = entropy
    means = {name: mean(term) for name, term in terms.items()}
    total = (weights["policy"] * means["policy_loss"].sum() + weights["value"] * means["value_loss"].sum()
             + weights["entropy"] * means["entropy_loss"].sum())
    info = {name: means[name].sum() for name in ("policy_loss", "value_loss", "entropy")}
    if aux:
        info["aux"] = {name: mean(value).sum() for name, value in aux.items()}
    if n_sub_steps:  # scalars by name: the epoch averages every leaf over updates
        info["per_sub_step"] = {name: tuple(means[name]) for name in ("policy_loss", "value_loss", "entropy")}
    if ppo:
        info["approx_kl"], info["clip_fraction"] = ppo_diagnostics(log_prob, batch["log_prob"], hparams.clip_range,
                                                                   valid)
    return total, info


def update(state: ACState, trajectory: Trajectory, config: ActorCriticConfig, model: ActorCritic,
           losses: Losses, sub_step_ids: Callable | None = None, sub_step_names: tuple = (),
           head_sub_steps: dict | None = None) -> tuple[ACState, dict]:
    """One learner update on a rollout: GAE, then PPO's minibatch passes or A2C's single step.

    `sub_step_ids(obs) -> int ids` marks the acting sub-step of a structured env's samples (None: a flat env), and
    `sub_step_names` names its sub-steps and `head_sub_steps` maps action heads to the sub-step that sets them.
    Returns the new state and the update's statistics by plain name (means over its gradient steps), with the
    rollout's action statistics (`metrics.action_statistics`)"""
    n_sub_steps = len(sub_step_names)
    hparams = state.hparams
    key, shuffle_key = jax.random.split(state.key)
    advantages, targets, values = advantages_and_targets(state.params, trajectory, hparams, model, sub_step_ids)
    batch = {"obs": trajectory.obs, "action": trajectory.action, "log_prob": trajectory.log_prob,
             "value": values, "advantage": advantages, "target": targets}
    valid = None if isinstance(trajectory.valid, tuple) else trajectory.valid  # None: every step is a transition
    if valid is not None:  # the steps that are no transitions are left out of every mean
        batch["valid"] = valid
    if is_recurrent(model):  # sequences of a few steps, each with the memory its env acted with
        batch = sequences(trajectory, batch, config.sequence_steps)
    else:
        batch = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), batch)
    burn_in = state.step < hparams.critic_burn_in_epochs * config.epoch_length  # Maze: the critic alone, weight 1
    weights = {"policy": jnp.where(burn_in, 0.0, hparams.policy_loss_coef),
               "value": jnp.where(burn_in, 1.0, hparams.value_loss_coef),
               "entropy": jnp.where(burn_in, 0.0, hparams.entropy_coef)}
    grad_fn = jax.grad(functools.partial(loss, model=model, losses=losses, sub_step_ids=sub_step_ids,
                                         n_sub_steps=n_sub_steps, ppo=config.ppo), has_aux=True)

    def minibatch_step(carry, minibatch):
        params, opt_state = carry
        grads, info = grad_fn(params, minibatch, hparams, weights)
        if n_sub_steps:  # each sub-step's policy network's gradient, before clipping
            info["per_sub_step"]["grad_norm"] = sub_step_grad_norms(grads, n_sub_steps)
        grads, info["grad_norm"] = clip_by_global_norm(grads, hparams.max_grad_norm)
        updates, opt_state = OPTIMIZER.update(grads, opt_state, params)
        return (optax.apply_updates(params, scale_by_learning_rate(updates, hparams.lr)), opt_state), info

    def pass_over_batch(carry, pass_key):
        return jax.lax.scan(minibatch_step, carry, shuffled_minibatches(pass_key, batch, config.n_minibatches))

    (params, opt_state), info = jax.lax.scan(
        pass_over_batch, (state.params, state.opt_state), jax.random.split(shuffle_key, config.n_optimization_epochs))
    state = state.replace(params=params, opt_state=opt_state, key=key, step=state.step + 1)
    acting = None if sub_step_ids is None else jax.vmap(sub_step_ids)(trajectory.obs)
    actions = action_statistics(model.policy.dist, trajectory.action, acting, head_sub_steps, valid)
    return state, {**learner_metrics(jax.tree.map(jnp.mean, info), hparams, sub_step_names, config.ppo), **actions}


def sub_step_grad_norms(grads, n_sub_steps: int) -> tuple:
    """The global norm of each sub-step policy network's gradient (`SubStepNetworks` names them networks_<i>)."""
    networks = grads["policy"]["params"]
    return tuple(global_norm(networks.get(f"networks_{i}", {})) for i in range(n_sub_steps))


def learner_metrics(info: dict, hparams: ACHyperparams, sub_step_names: tuple, ppo: bool) -> dict:
    """An update's statistics (means over its gradient steps) by plain name; the shell shows them under Maze's
    tags (`shell.maze_tags`)."""
    metrics = {"policy_loss": info["policy_loss"], "entropy": info["entropy"], "grad_norm": info["grad_norm"],
               "learning_rate": hparams.lr, "value_loss": info["value_loss"], **info.get("aux", {})}
    for i, name in enumerate(sub_step_names):  # a structured env's statistics per sub-step (Maze's multi-step rows)
        for row in ("policy_loss", "entropy", "grad_norm", "value_loss"):
            metrics[f"{row}/{name}"] = info["per_sub_step"][row][i]
    if ppo:  # A2C's single step starts at the rollout policy, so its KL and clipping say nothing
        metrics["approx_kl"] = info["approx_kl"]
        metrics["clip_fraction"] = info["clip_fraction"]
    return metrics


def make_actor_critic(config: ActorCriticConfig, model: ActorCritic, obs_example, sub_step_ids: Callable | None = None,
                      sub_step_names: tuple = (), losses: Losses | None = None,
                      head_sub_steps: dict | None = None) -> Algorithm:
    """PPO or A2C with its static settings bound: the `Algorithm` that collectors and the shell drive.

    `obs_example` is one observation (for the networks' shapes). `losses` replaces the loss terms (default: PPO's
    clipped objective or A2C's policy gradient, squared value error, entropy bonus)."""
    losses = losses or Losses.for_algorithm(config.ppo)
    length = config.sequence_steps
    if is_recurrent(model) and (config.n_rollout_steps % length or (config.ppo and config.batch_size % length)):
        sizes = f"algorithm.n_rollout_steps={config.n_rollout_steps}" + (
            f" and algorithm.batch_size={config.batch_size}" if config.ppo else "")
        raise ConfigError(f"algorithm.sequence_length={length}: a recurrent model's learner replays sequences of "
                          f"this many steps, so it must divide {sizes}")
    return Algorithm(
        name=config.name,
        config=config,
        policy=model.policy,
        hyperparams=config.hyperparams(),
        init=lambda key, hparams: init(key, hparams, model, obs_example),
        update=functools.partial(update, config=config, model=model, losses=losses, sub_step_ids=sub_step_ids,
                                 sub_step_names=sub_step_names, head_sub_steps=head_sub_steps),
        explore=functools.partial(explore, model),
        initial_memory=model.initial_memory,
        masks_steps=True,
    )
