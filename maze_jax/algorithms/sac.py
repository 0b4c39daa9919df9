"""Soft Actor-Critic (Maze's `algorithm=sac`) as pure functions, following the papers where Maze deviates.

Continuous actions (Haarnoja et al. 2018, "SAC: algorithms and applications"): a squashed Gaussian policy,
reparameterised, twin Q(s, a) critics with Polyak-averaged targets, and a tuned temperature alpha whose target
entropy is -multiplier * (action dimensions). Discrete actions (Christodoulou 2019): Q(s, .) per head, expectations
over the policy's probabilities instead of samples, and a target entropy of +multiplier * 0.98 * log(actions) per
head (Maze flips its sign). MultiDiscrete and Dict actions of Discrete heads, or of Box heads, work alike.

The replay buffer (flashbax's item buffer) lives in the learner's state, so on JAX envs a whole epoch of
collection and gradient steps is one program, and a checkpoint holds the buffer: resume is exact. `update` takes a
time-major `Trajectory`, stores its transitions, then takes `num_batches_per_iter` gradient steps. Before update 0,
`warmup` stores `initial_buffer_size` transitions of the initial sampling policy (uniformly random by default).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import flashbax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from maze_jax.algorithms import Algorithm, hyperparams_struct, traced
from maze_jax.algorithms.actor_critic import Experience, Trajectory
from maze_jax.algorithms.metrics import action_statistics
from maze_jax.algorithms.optim import clip_by_global_norm, scale_by_learning_rate
from maze_jax.config import ConfigError
from maze_jax.models import Policy
from maze_jax.models.distributions import (Categorical, DiagGaussian, SquashedGaussian, join_leaves, leaf_actions,
                                           leaf_heads, leaf_slices)

DISCRETE_TARGET_FRACTION = 0.98
"""The target entropy of a discrete head, as a fraction of its largest (log of its action count)."""
BOX_DISTRIBUTION = "squashed_gaussian"
"""What a model's `box_distribution: auto` gives SAC: its policy loss needs actions that are reparameterised and
inside the bounds (Maze's model presets squash Box actions for every algorithm)."""


@dataclass(frozen=True)
class SACConfig:
    """SAC settings with Maze's names. Sizes are static; the fields declared `traced` are the default
    hyperparameters, which live traced in the state (`SACHyperparams`)."""

    n_envs: int = 1
    """Envs stepped per iteration (Maze's `num_actors`)."""
    n_rollout_steps: int = 1
    """Steps per env per iteration (Maze's `n_rollout_steps` times `rollouts_per_iteration`)."""
    epoch_length: int = 100
    """Iterations (collection + gradient steps) per epoch."""
    num_batches_per_iter: int = 1
    """Gradient steps per iteration: per env step, num_batches_per_iter / (n_envs * n_rollout_steps)."""
    batch_size: int = 100
    """Transitions per gradient step, drawn uniformly from the buffer."""
    replay_buffer_size: int = 1_000_000
    """Transitions the buffer holds; the oldest are overwritten."""
    initial_buffer_size: int = 10_000
    """Transitions of the initial sampling policy stored before the first update."""
    random_initial_policy: bool = True
    """The initial transitions act uniformly at random (Maze's RandomPolicy); false: the fresh policy acts."""
    entropy_tuning: bool = True
    """Tune alpha towards the target entropy; false keeps alpha at `entropy_coef`."""
    target_update_interval: int = 1
    """Soft-update the target critics every this many gradient steps."""
    n_eval_episodes: int = 8
    """Evaluation episodes after every epoch (Maze's `rollout_evaluator.n_episodes`)."""
    deterministic_eval: bool = True
    """Evaluate the distribution's mode."""
    n_epochs: int = 0
    """Epochs to train; 0 = until stopped."""
    patience: int = 50
    """Stop once more epochs than this pass without a better evaluation; 0 = never."""
    lr: float = traced(0.001)
    """Adam's learning rate of the policy and the critics."""
    gamma: float = traced(0.99)
    tau: float = traced(0.005)
    """Polyak weight of the soft target update."""
    entropy_coef: float = traced(0.2)
    """alpha without tuning."""
    entropy_coef_lr: float = traced(0.0007)
    """Adam's learning rate of log alpha."""
    target_entropy_multiplier: float = traced(1.0)
    max_grad_norm: float = traced(0.0)
    """Global gradient-norm clip of the policy and of the critics, each on its own; 0 = off."""
    mesh: Any = None
    """A jax.sharding.Mesh (None: one device); set by the shell, not a config key."""

    name = "sac"

    @property
    def warmup_transitions(self) -> int:
        """Transitions stored before update 0: the initial fill, and at least one batch."""
        return max(self.initial_buffer_size, self.batch_size)

    def hyperparams(self) -> SACHyperparams:
        return SACHyperparams.of(self)


SACHyperparams = hyperparams_struct(SACConfig, "SACHyperparams")


class SACState(struct.PyTreeNode):
    """The learner: networks {"policy", "q", "q_target"} (the twin critics stacked on a leading axis of 2), Adam's
    moments {"policy", "q", "alpha"}, log alpha, the replay buffer, RNG key, updates done and hyperparameters."""

    params: Any
    opt_state: Any
    log_alpha: jax.Array
    buffer: Any
    key: jax.Array
    step: jax.Array
    hparams: SACHyperparams


OPTIMIZER = optax.scale_by_adam()  # learning rates come from the traced hyperparameters


@dataclass(frozen=True)
class ActionHeads:
    """The action space as SAC sees it: all heads Discrete (Q(s, .) per head) or all Box (Q(s, a) of the
    squashed actions in [-1, 1])."""

    dist: Any
    discrete: bool

    @property
    def heads(self) -> list:
        """The single heads, nested ones opened (`models.distributions.leaf_heads`)."""
        return [d for _, d in leaf_heads(self.dist)]

    def outputs(self, out) -> list:
        """Each head's slice of a batch of distribution parameters."""
        return [out[..., a:b] for a, b in leaf_slices(self.dist)]

    def actions(self, action) -> list:
        return leaf_actions(self.dist, action)

    def join(self, parts: list):
        return join_leaves(self.dist, parts)

    @property
    def n_q_outputs(self) -> int:
        return sum(h.n for h in self.heads) if self.discrete else 1

    def q_slices(self) -> list[tuple[int, int]]:
        stops = np.cumsum([h.n for h in self.heads]).tolist()
        return list(zip([0] + stops[:-1], stops))

    def target_entropy(self, multiplier) -> jax.Array:
        """-multiplier * dimensions (Box); multiplier * 0.98 * sum of log(actions) over heads (Discrete)."""
        if self.discrete:
            return multiplier * DISCRETE_TARGET_FRACTION * sum(math.log(h.n) for h in self.heads)
        return -multiplier * sum(h.size for h in self.heads)

    def features(self, action) -> jax.Array:
        """A batch of continuous actions as the critic sees them: tanh of the Gaussian samples, flat, concatenated."""
        return jnp.concatenate([jnp.tanh(a).reshape(a.shape[0], -1) for a in self.actions(action)], -1)

    def unit_log_prob(self, out, action) -> jax.Array:
        """Log-density of a continuous action squashed into [-1, 1] (the Box's own scale taken out, as the paper's
        target entropy assumes)."""
        scale = sum(float(np.sum(np.log(h.half_widths()))) for h in self.heads)
        return self.dist.log_prob(out, action) + scale

    def uniform(self, key, masked_zeros):
        """Uniformly random raw actions (`masked_zeros`: zero logits with the env's masks applied)."""
        keys = jax.random.split(key, len(self.heads))
        parts = []
        for k, head, zeros in zip(keys, self.heads, self.outputs(masked_zeros)):
            if self.discrete:
                parts.append(jax.random.categorical(k, zeros))
            else:
                u = jax.random.uniform(k, zeros.shape[:-1] + (head.size,), minval=-1.0, maxval=1.0)
                parts.append(jnp.arctanh(jnp.clip(u, -1 + 1e-6, 1 - 1e-6)))
        return self.join(parts)


def action_heads(dist) -> ActionHeads:
    """SAC's view of an action distribution, or one line saying why SAC cannot learn it."""
    heads = [d for _, d in leaf_heads(dist)]
    if all(isinstance(h, Categorical) for h in heads):
        return ActionHeads(dist, True)
    if all(isinstance(h, SquashedGaussian) for h in heads):
        return ActionHeads(dist, False)
    if all(isinstance(h, DiagGaussian) for h in heads):
        raise ConfigError("SAC needs a squashed Gaussian over Box actions (reparameterised and inside the bounds): "
                          "set model.box_distribution=squashed_gaussian (or auto), or use model=vector_obs")
    raise ConfigError("SAC learns all-Discrete or all-Box action spaces; this one mixes Discrete and Box heads, for "
                      "which its critic has no exact form: use algorithm=ppo")


def init(key, hparams: SACHyperparams, policy: Policy, q_net, heads: ActionHeads, buffer, obs_example) -> SACState:
    """A fresh learner: the policy, two critics initialised apart, their targets as copies, alpha 1 (log 0)."""
    key, policy_key, q_key = jax.random.split(key, 3)
    feature = None if heads.discrete else heads.features(jax.tree.map(lambda x: x[None], zero_action(heads)))[0]
    q = jax.vmap(lambda k: q_net.init(k, obs_example, feature))(jax.random.split(q_key, 2))
    params = {"policy": policy.init(policy_key, obs_example), "q": q, "q_target": q}
    opt_state = {"policy": OPTIMIZER.init(params["policy"]), "q": OPTIMIZER.init(q),
                 "alpha": OPTIMIZER.init(jnp.float32(0.0))}
    example = transition_example(obs_example, heads)
    return SACState(params, opt_state, jnp.float32(0.0), buffer.init(example), key, jnp.int32(0), hparams)


def zero_action(heads: ActionHeads):
    """One raw action of zeros, shaped as the distribution samples it."""
    parts = [jnp.int32(0) if heads.discrete else jnp.zeros(h.size, jnp.float32) for h in heads.heads]
    return heads.join(parts)


def transition_example(obs_example, heads: ActionHeads) -> dict:
    """One stored transition: observation, raw action, reward, terminated, the observation the step ended in."""
    return {"obs": obs_example, "action": zero_action(heads), "reward": jnp.float32(0.0),
            "terminated": jnp.bool_(False), "next_obs": obs_example}


def acting(state: SACState, config: SACConfig):
    """What the actors need: the policy, and whether they sample the initial random actions (the buffer is
    empty: the warm-up rollout)."""
    filling = config.random_initial_policy & (state.buffer.current_index == 0) & ~state.buffer.is_full
    return {"policy": state.params["policy"], "random": filling.astype(jnp.float32)}


def explore(policy: Policy, heads: ActionHeads, acting_params, obs, key, memory=()):
    """Actions for a batch of observations: sampled from the policy, or uniform while the buffer fills."""
    out = policy.outputs(acting_params["policy"], obs)
    policy_key, random_key = jax.random.split(key)
    sampled = policy.dist.sample(policy_key, out)
    uniform = heads.uniform(random_key, jax.vmap(policy.head)(jnp.zeros_like(out), obs))
    action = jax.tree.map(lambda u, s: jnp.where(acting_params["random"] > 0, u, s), uniform, sampled)
    zeros = jnp.zeros(jax.tree.leaves(obs)[0].shape[0], jnp.float32)
    return policy.dist.to_env(action), Experience(action, zeros, zeros), memory


def transitions(trajectory: Trajectory) -> dict:
    """A time-major trajectory's (T * B) transitions. A truncated step's next observation is its final one, so its
    target bootstraps from it; only a terminated step's does not."""
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    return jax.tree.map(flat, {"obs": trajectory.obs, "action": trajectory.action, "reward": trajectory.reward,
                               "terminated": trajectory.terminated, "next_obs": trajectory.final_obs})


def warmup(state: SACState, trajectory: Trajectory, buffer) -> SACState:
    """Stores the initial sampling policy's transitions, without learning."""
    return state.replace(buffer=buffer.add(state.buffer, transitions(trajectory)))


def q_values(q_net, q_params, obs, features):
    """Both critics' outputs for a batch: (2, B, outputs)."""
    one = lambda p: jax.vmap(lambda o, f: q_net.apply(p, o, f))(obs, features)  # noqa: E731
    return jax.vmap(one)(q_params)


def losses(params, log_alpha, batch: dict, key, hparams: SACHyperparams, config: SACConfig, policy: Policy,
           q_net, heads: ActionHeads):
    """The three losses of a batch as functions of their own parameters (critics, policy, log alpha), each with
    its statistics. The critics' target uses the target critics and a fresh action from the current policy."""
    alpha = jnp.exp(log_alpha) if config.entropy_tuning else hparams.entropy_coef
    target_entropy = heads.target_entropy(hparams.target_entropy_multiplier)
    next_key, policy_key = jax.random.split(key)
    next_out = policy.outputs(params["policy"], batch["next_obs"])
    not_done = 1.0 - batch["terminated"].astype(jnp.float32)

    def discrete_terms(out, q):  # per head: probabilities, log-probabilities, Q of every action
        return [(jax.nn.softmax(o), jax.nn.log_softmax(o), q[..., a:b])
                for o, (a, b) in zip(heads.outputs(out), heads.q_slices())]

    if heads.discrete:
        q_next = jnp.min(q_values(q_net, params["q_target"], batch["next_obs"], None), 0)
        next_value = [jnp.sum(p * (qh - alpha * jnp.where(p > 0, lp, 0.0)), -1)
                      for p, lp, qh in discrete_terms(next_out, q_next)]  # one target per head
    else:
        next_action = policy.dist.sample(next_key, next_out)
        q_next = jnp.min(q_values(q_net, params["q_target"], batch["next_obs"], heads.features(next_action)), 0)
        next_value = [q_next[..., 0] - alpha * heads.unit_log_prob(next_out, next_action)]
    targets = [jax.lax.stop_gradient(batch["reward"] + hparams.gamma * not_done * v) for v in next_value]

    def critic_loss(q_params):
        if heads.discrete:
            q = q_values(q_net, q_params, batch["obs"], None)
            taken = [jnp.take_along_axis(q[..., a:b], act[None, :, None].astype(jnp.int32), -1)[..., 0]
                     for (a, b), act in zip(heads.q_slices(), heads.actions(batch["action"]))]
        else:
            taken = [q_values(q_net, q_params, batch["obs"], heads.features(batch["action"]))[..., 0]]
        loss = sum(0.5 * jnp.mean((q - y[None]) ** 2, axis=1).sum() for q, y in zip(taken, targets))
        return loss, jnp.mean(jnp.stack(taken))

    def policy_loss(policy_params, q_params):
        out = policy.outputs(policy_params, batch["obs"])
        if heads.discrete:
            q = jnp.min(q_values(q_net, q_params, batch["obs"], None), 0)
            terms = discrete_terms(out, q)
            loss = sum(jnp.mean(jnp.sum(p * (alpha * jnp.where(p > 0, lp, 0.0) - qh), -1)) for p, lp, qh in terms)
            entropy = sum(-jnp.sum(p * jnp.where(p > 0, lp, 0.0), -1) for p, lp, _ in terms)
        else:
            action = policy.dist.sample(policy_key, out)
            log_prob = heads.unit_log_prob(out, action)
            q = jnp.min(q_values(q_net, q_params, batch["obs"], heads.features(action)), 0)[..., 0]
            loss = jnp.mean(alpha * log_prob - q)
            entropy = -log_prob
        return loss, jax.lax.stop_gradient(entropy)

    def alpha_loss(log_alpha_, entropy):  # descends while the policy's entropy is above the target
        return jnp.mean(log_alpha_ * (entropy - target_entropy))

    return critic_loss, policy_loss, alpha_loss, alpha


def gradient_step(state: SACState, batch: dict, index, config: SACConfig, policy: Policy, q_net, heads: ActionHeads):
    """Gradient step `index` of an update, on a batch of transitions: critics, then the policy against the
    updated critics, then alpha; the targets move towards the critics every `target_update_interval` gradient
    steps (counted over the run, from 0)."""
    hparams = state.hparams
    key, loss_key = jax.random.split(state.key)
    params, opt = state.params, state.opt_state
    critic_loss, policy_loss, alpha_loss, alpha = losses(params, state.log_alpha, batch, loss_key, hparams, config,
                                                         policy, q_net, heads)

    def adam_step(grads, opt_state, value, lr, clip: bool):
        norm = None
        if clip:
            grads, norm = clip_by_global_norm(grads, hparams.max_grad_norm)
        updates, opt_state = OPTIMIZER.update(grads, opt_state, value)
        return optax.apply_updates(value, scale_by_learning_rate(updates, lr)), opt_state, norm

    (q_loss, q_mean), q_grads = jax.value_and_grad(critic_loss, has_aux=True)(params["q"])
    q, q_opt, q_norm = adam_step(q_grads, opt["q"], params["q"], hparams.lr, True)
    (pi_loss, entropy), pi_grads = jax.value_and_grad(policy_loss, has_aux=True)(params["policy"], q)
    pi, pi_opt, pi_norm = adam_step(pi_grads, opt["policy"], params["policy"], hparams.lr, True)
    log_alpha, alpha_opt, a_loss = state.log_alpha, opt["alpha"], jnp.float32(0.0)
    if config.entropy_tuning:
        a_loss, a_grad = jax.value_and_grad(alpha_loss)(state.log_alpha, entropy)
        log_alpha, alpha_opt, _ = adam_step(a_grad, opt["alpha"], state.log_alpha, hparams.entropy_coef_lr, False)
    step = state.step * config.num_batches_per_iter + index  # gradient steps before this one
    tau = jnp.where(step % config.target_update_interval == 0, hparams.tau, 0.0)
    q_target = jax.tree.map(lambda t, s: (1.0 - tau) * t + tau * s, params["q_target"], q)
    state = state.replace(params={"policy": pi, "q": q, "q_target": q_target}, log_alpha=log_alpha, key=key,
                          opt_state={"policy": pi_opt, "q": q_opt, "alpha": alpha_opt})
    info = {"policy_loss": pi_loss, "policy_grad_norm": pi_norm, "policy_entropy": jnp.mean(entropy),
            "critic_value": q_mean, "critic_value_loss": q_loss, "critic_grad_norm": q_norm,
            "entropy_coef": alpha, "entropy_loss": a_loss}
    return state, info


def update(state: SACState, trajectory: Trajectory, buffer, config: SACConfig, policy: Policy, q_net,
           heads: ActionHeads) -> tuple[SACState, dict]:
    """Stores a rollout's transitions, then takes `num_batches_per_iter` gradient steps on batches drawn uniformly
    (with replacement) from the buffer. Returns the state and the update's statistics by plain name (means over
    its gradient steps; the shell shows them as Maze's SACEvents rows), with the rollout's action statistics."""
    stored = buffer.add(state.buffer, transitions(trajectory))
    key, sample_key = jax.random.split(state.key)
    # every batch drawn at once, so the loop of gradient steps does not carry the buffer (XLA would copy it)
    batches = jax.tree.map(lambda x: x.reshape((config.num_batches_per_iter, config.batch_size) + x.shape[1:]),
                           buffer.sample(stored, sample_key).experience)

    def one(carry, inputs):
        return gradient_step(carry, *inputs, config, policy, q_net, heads)

    learner, info = jax.lax.scan(one, state.replace(buffer=(), key=key),
                                 (batches, jnp.arange(config.num_batches_per_iter)))
    state = learner.replace(buffer=stored, step=state.step + 1)
    size = jnp.where(state.buffer.is_full, config.replay_buffer_size, state.buffer.current_index)
    metrics = {name: jnp.mean(value) for name, value in info.items()}
    metrics["buffer_size"] = size.astype(jnp.float32)
    actions = action_statistics(policy.dist, trajectory.action)
    return state, {**metrics, **actions}


def make_sac(config: SACConfig, policy: Policy, q_net_for, obs_example) -> Algorithm:
    """SAC with its static settings bound. `q_net_for(n_outputs)` builds the critic network (one per twin)."""
    if policy.recurrent:
        raise ConfigError("SAC replays single transitions, so it takes a feed-forward model, not a recurrent one")
    if policy.shared_value:
        raise ConfigError("SAC's critics are state-action networks of their own: use critic=template_state_action")
    if config.batch_size > config.replay_buffer_size:
        raise ConfigError(f"algorithm.batch_size={config.batch_size} is above algorithm.replay_buffer_size="
                          f"{config.replay_buffer_size}: a batch is drawn from the buffer")
    if config.initial_buffer_size > config.replay_buffer_size:
        raise ConfigError(f"algorithm.initial_buffer_size={config.initial_buffer_size} is above "
                          f"algorithm.replay_buffer_size={config.replay_buffer_size}: the buffer cannot hold it")
    heads = action_heads(policy.dist)
    q_net = q_net_for(heads.n_q_outputs)
    buffer = flashbax.make_item_buffer(max_length=config.replay_buffer_size, min_length=1,
                                       sample_batch_size=config.batch_size * config.num_batches_per_iter,
                                       add_batches=True)
    bound = dict(config=config, policy=policy, q_net=q_net, heads=heads)
    return Algorithm(
        name=config.name,
        config=config,
        policy=policy,
        hyperparams=config.hyperparams(),
        init=lambda key, hparams: init(key, hparams, policy, q_net, heads, buffer, obs_example),
        update=functools.partial(update, buffer=buffer, **bound),
        explore=functools.partial(explore, policy, heads),
        acting=functools.partial(acting, config=config),
        warmup_steps=-(-config.warmup_transitions // config.n_envs),
        warmup=functools.partial(warmup, buffer=buffer),
    )
