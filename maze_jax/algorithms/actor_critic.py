"""PPO and A2C (Maze's actor-critic trainers) as pure functions: one jitted epoch = `epoch_length` updates.

Each update collects `n_rollout_steps` steps from `runner.concurrency` envs with `lax.scan`, computes GAE with a
reverse scan, then optimises: PPO runs `n_optimization_epochs` over shuffled minibatches of `batch_size`
(permutation + reshape + scan), A2C takes one gradient step on the whole rollout. Hyperparameters live in the
state as traced scalars, so `jax.vmap` over states trains several seeds or settings in one program.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from maze_jax.algorithms import Trainer
from maze_jax.algorithms.gae import compute_gae
from maze_jax.algorithms.losses import a2c_policy_loss, normalize, ppo_policy_loss, sub_step_weights
from maze_jax.algorithms.optim import clip_by_global_norm, set_learning_rate
from maze_jax.config import ConfigError, read
from maze_jax.devices import check_divisible, make_mesh, read_n_devices, replicate, shard_batch
from maze_jax.envs import EnvSpec, EpisodeStats
from maze_jax.envs.episodes import reset_batch, step_batch
from maze_jax.envs.structured import ACTOR_ID, sub_steps
from maze_jax.evaluation import evaluate
from maze_jax.models import ActorCritic, build_actor_critic
from maze_jax.stats import episode_statistics

# Traced hyperparameters (Maze's names); `lr` lives in the optimizer state.
HPARAMS = ("gamma", "gae_lambda", "policy_loss_coef", "value_loss_coef", "entropy_coef", "max_grad_norm",
           "clip_range", "critic_burn_in_epochs")


@dataclass(frozen=True)
class ACConfig:
    """Static sizes of the program (shapes and loop lengths)."""

    n_envs: int = 16
    n_rollout_steps: int = 100
    epoch_length: int = 25
    n_optimization_epochs: int = 4
    n_minibatches: int = 16
    n_eval_episodes: int = 8
    deterministic_eval: bool = True
    ppo: bool = True
    mesh: Any = None  # a jax.sharding.Mesh to split the envs over (None: one device)


class ACState(struct.PyTreeNode):
    """Parameters, optimizer state, RNG key, counters, the envs mid-episode, and traced hyperparameters."""

    params: Any
    opt_state: Any
    key: jax.Array
    epoch: jax.Array
    env_state: Any
    obs: Any
    episode_return: jax.Array
    episode_length: jax.Array
    hparams: dict


class Transition(NamedTuple):
    obs: Any
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    done: jax.Array


def shuffled_minibatches(key, batch, n_minibatches: int):
    """`batch` (leading axis = samples) permuted and split into `n_minibatches` equal minibatches (new leading axis)."""
    n_samples = jax.tree.leaves(batch)[0].shape[0]
    order = jax.random.permutation(key, n_samples)
    return jax.tree.map(lambda x: x[order].reshape((n_minibatches, -1) + x.shape[1:]), batch)


def make_actor_critic(config: ACConfig, env_spec: EnvSpec, model: ActorCritic):
    """Pure `init(key, hparams) -> ACState`, `train_epoch(state) -> (state, metrics)`, `evaluate_state(state, key)`."""
    env, env_params = env_spec.env, env_spec.params
    dist = model.policy.dist
    steps = sub_steps(env)
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=0.0)
    obs_example = env_spec.observation_example()

    def init(key, hparams: dict) -> ACState:
        key, init_key, reset_key = jax.random.split(key, 3)
        params = model.init(init_key, obs_example)
        opt_state = set_learning_rate(optimizer.init(params), hparams["lr"])
        obs, env_state = reset_batch(env, env_params, reset_key, config.n_envs)
        zeros = jnp.zeros(config.n_envs, jnp.float32)
        traced = {k: jnp.asarray(hparams[k], jnp.float32) for k in HPARAMS}
        state = ACState(params, opt_state, key, jnp.int32(0), env_state, obs, zeros, zeros.astype(jnp.int32), traced)
        return replicate(state, config.mesh)

    def collect_rollout(state: ACState, key, stats: EpisodeStats):
        """`n_rollout_steps` steps of every env; truncated episodes get gamma * V(final obs) added to their reward."""
        gamma = state.hparams["gamma"]

        def step(carry, keys):
            obs, env_state, ep_return, ep_length, stats = carry
            act_key, env_keys = keys
            out, value = model(state.params, obs)
            action = dist.sample(act_key, out)
            next_obs, env_state, reward, terminated, truncated, info = step_batch(
                env, env_params, env_keys, env_state, dist.to_env(action))
            bootstrap = gamma * model.value(state.params, info["final_observation"])
            done = terminated | truncated
            ep_return, ep_length = ep_return + reward, ep_length + 1
            stats = stats.add(done, ep_return, ep_length)
            transition = Transition(obs, action, dist.log_prob(out, action), value,
                                    reward + jnp.where(truncated & ~terminated, bootstrap, 0.0), done)
            envs = (next_obs, env_state, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length))
            return (*shard_batch(envs, config.mesh), stats), transition

        act_key, env_key = jax.random.split(key)
        keys = (jax.random.split(act_key, config.n_rollout_steps),
                jax.random.split(env_key, config.n_rollout_steps * config.n_envs).reshape(
                    (config.n_rollout_steps, config.n_envs)))
        envs = (state.obs, state.env_state, state.episode_return, state.episode_length)
        carry = (*shard_batch(envs, config.mesh), stats)
        (obs, env_state, ep_return, ep_length, stats), trajectory = jax.lax.scan(step, carry, keys)
        state = state.replace(obs=obs, env_state=env_state, episode_return=ep_return, episode_length=ep_length)
        return state, trajectory, model.value(state.params, obs), stats

    def loss_fn(params, batch, hparams, policy_weight):
        """Loss of a minibatch. A structured env's losses are sums over its sub-steps of per-sub-step means,
        and its statistics are reported per sub-step too."""
        out, values = model(params, batch["obs"])
        log_prob = dist.log_prob(out, batch["action"])
        entropies, squared_errors = dist.entropy(out), (values - batch["target"]) ** 2
        mean, info = jnp.mean, {}
        if steps:
            weights = sub_step_weights(batch["obs"][ACTOR_ID], len(steps))
            per_step = lambda x: (weights * x[:, None]).sum(0)  # the mean of x over each sub-step's samples
            mean = lambda x: per_step(x).sum()
            names = [step.name for step in steps]  # scalars by name: the epoch averages every leaf over updates
            info = {"entropy_per_step": dict(zip(names, per_step(entropies))),
                    "value_loss_per_step": dict(zip(names, per_step(squared_errors)))}
        entropy = mean(entropies)
        if config.ppo:
            policy_loss, approx_kl, clip_fraction = ppo_policy_loss(
                log_prob, batch["log_prob"], normalize(batch["advantage"]), hparams["clip_range"], mean)
        else:
            policy_loss = a2c_policy_loss(log_prob, batch["advantage"], mean)
            approx_kl = clip_fraction = jnp.float32(0.0)
        critic_loss = mean(squared_errors)
        total = (policy_weight * (hparams["policy_loss_coef"] * policy_loss - hparams["entropy_coef"] * entropy)
                 + hparams["value_loss_coef"] * critic_loss)
        return total, {"policy_loss": policy_loss, "value_loss": critic_loss, "entropy": entropy,
                       "approx_kl": approx_kl, "clip_fraction": clip_fraction, **info}

    def optimise(state: ACState, batch: dict, key):
        """PPO: `n_optimization_epochs` passes over shuffled minibatches. A2C: one step on the whole batch."""
        policy_weight = (state.epoch >= state.hparams["critic_burn_in_epochs"]).astype(jnp.float32)

        def minibatch_step(carry, minibatch):
            params, opt_state = carry
            grads, info = jax.grad(loss_fn, has_aux=True)(params, minibatch, state.hparams, policy_weight)
            grads, info["grad_norm"] = clip_by_global_norm(grads, state.hparams["max_grad_norm"])
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), info

        def pass_over_batch(carry, pass_key):
            return jax.lax.scan(minibatch_step, carry, shuffled_minibatches(pass_key, batch, config.n_minibatches))

        (params, opt_state), info = jax.lax.scan(
            pass_over_batch, (state.params, state.opt_state), jax.random.split(key, config.n_optimization_epochs))
        return state.replace(params=params, opt_state=opt_state), jax.tree.map(jnp.mean, info)

    def update(carry, _):
        state, stats = carry
        key, rollout_key, optimise_key = jax.random.split(state.key, 3)
        state, trajectory, last_value, stats = collect_rollout(state.replace(key=key), rollout_key, stats)
        advantages, targets = compute_gae(trajectory.reward, trajectory.value, trajectory.done, last_value,
                                          state.hparams["gamma"], state.hparams["gae_lambda"])
        flat = lambda x: x.reshape((-1,) + x.shape[2:])
        batch = {"obs": jax.tree.map(flat, trajectory.obs), "action": jax.tree.map(flat, trajectory.action),
                 "log_prob": flat(trajectory.log_prob), "advantage": flat(advantages), "target": flat(targets)}
        state, info = optimise(state, batch, optimise_key)
        return (state, stats), info

    def train_epoch(state: ACState):
        stats = EpisodeStats.zeros(config.n_envs, env_spec.horizon)
        (state, stats), info = jax.lax.scan(update, (state, stats), None, length=config.epoch_length)
        info = jax.tree.map(jnp.mean, info)
        metrics = {
            **episode_statistics(stats, "train"),
            "train_BaseEnvEvents/reward/step_count": jnp.int32(
                config.epoch_length * config.n_rollout_steps * config.n_envs),
            "train_PolicyEvents/policy_loss": info["policy_loss"],
            "train_PolicyEvents/entropy": info["entropy"],
            "train_PolicyEvents/grad_norm": info["grad_norm"],
            "train_PolicyEvents/learning_rate": state.opt_state.hyperparams["learning_rate"],
            "train_CriticEvents/value_loss": info["value_loss"],
        }
        for step in steps:  # a structured env's statistics per sub-step
            metrics[f"train_PolicyEvents/entropy/{step.name}"] = info["entropy_per_step"][step.name]
            metrics[f"train_CriticEvents/value_loss/{step.name}"] = info["value_loss_per_step"][step.name]
        if config.ppo:  # A2C's single step starts at the rollout policy, so its KL and clipping say nothing
            metrics["train_PolicyEvents/approx_kl"] = info["approx_kl"]
            metrics["train_PolicyEvents/clip_fraction"] = info["clip_fraction"]
        return replicate((state.replace(epoch=state.epoch + 1), metrics), config.mesh)

    def evaluate_state(state: ACState, key) -> EpisodeStats:
        return evaluate(model.policy, state.params["policy"], env_spec, key, config.n_eval_episodes,
                        config.deterministic_eval)

    return init, train_epoch, evaluate_state


def read_config(cfg, env_spec: EnvSpec, ppo: bool) -> tuple[ACConfig, dict]:
    """Static ACConfig and traced hyperparameters from Maze's actor-critic names, range-checked."""
    a = cfg.algorithm
    n_envs = read(cfg.runner, "concurrency", int, "runner", low=1)
    n_steps = read(a, "n_rollout_steps", int, "algorithm", low=1)
    n_samples = n_envs * n_steps
    if ppo:
        batch_size = read(a, "batch_size", int, "algorithm", low=1)
        if n_samples % batch_size:
            raise ConfigError(f"algorithm.batch_size={batch_size} does not divide the rollout of "
                              f"runner.concurrency x algorithm.n_rollout_steps = {n_envs} x {n_steps} = {n_samples}")
        n_minibatches = n_samples // batch_size
        n_opt_epochs = read(a, "n_optimization_epochs", int, "algorithm", low=1)
    else:
        n_minibatches, n_opt_epochs = 1, 1
    evaluator = a.get("rollout_evaluator") or {}
    config = ACConfig(
        n_envs=n_envs, n_rollout_steps=n_steps, epoch_length=read(a, "epoch_length", int, "algorithm", low=1),
        n_optimization_epochs=n_opt_epochs, n_minibatches=n_minibatches,
        n_eval_episodes=read(evaluator, "n_episodes", int, "algorithm.rollout_evaluator", low=1),
        deterministic_eval=read(evaluator, "deterministic", bool, "algorithm.rollout_evaluator"), ppo=ppo,
        mesh=make_mesh(read_n_devices(cfg.runner)))
    check_divisible(n_envs, config.mesh, "runner.concurrency")
    low = {"gamma": 0.0, "gae_lambda": 0.0, "clip_range": 0.0}
    hparams = {"lr": read(a, "lr", float, "algorithm", low=0.0, low_inclusive=False)}
    for name in HPARAMS:
        if name == "clip_range" and not ppo:
            hparams[name] = 0.0
            continue
        high = 1.0 if name in ("gamma", "gae_lambda") else None
        hparams[name] = read(a, name, float, "algorithm", low=low.get(name, 0.0), high=high)
    return config, hparams


def build(cfg, env_spec: EnvSpec, ppo: bool, model: Any = None) -> Trainer:
    """The PPO (ppo=True) or A2C trainer for the shell; `model` (a flax module) replaces the `model` config."""
    config, hparams = read_config(cfg, env_spec, ppo)
    model = build_actor_critic(cfg.model if model is None else model, cfg.get("critic"), env_spec)
    init, train_epoch, evaluate_state = make_actor_critic(config, env_spec, model)

    def with_hyperparams(state: ACState) -> ACState:
        return state.replace(opt_state=set_learning_rate(state.opt_state, hparams["lr"]),
                             hparams={k: jnp.float32(hparams[k]) for k in HPARAMS})

    return Trainer(
        name="ppo" if ppo else "a2c",
        policy=model.policy,
        n_epochs=read(cfg.algorithm, "n_epochs", int, "algorithm", low=0),
        init=lambda key: init(key, hparams),
        init_with=init,
        hyperparams=hparams,
        train_epoch=train_epoch,
        evaluate=evaluate_state,
        policy_params=lambda state: state.params["policy"],
        with_hyperparams=with_hyperparams,
        model_params=lambda state: state.params,
        with_model=lambda state, params: state.replace(params={**state.params, **params}),
        patience=read(cfg.algorithm, "patience", int, "algorithm", low=0),
    )


def build_ppo(cfg, env_spec: EnvSpec, model: Any = None) -> Trainer:
    """The PPO trainer (the `_target_` of `algorithm=ppo`)."""
    return build(cfg, env_spec, True, model)


def build_a2c(cfg, env_spec: EnvSpec, model: Any = None) -> Trainer:
    """The A2C trainer (the `_target_` of `algorithm=a2c`)."""
    return build(cfg, env_spec, False, model)
