"""OpenAI-ES (Maze's ES trainer): antithetic Gaussian perturbations of the flat policy parameters, centred-rank
fitness shaping, and an optax optimizer on the mean. One update per epoch, the whole population in one vmap.

Pure functions over `ESState`; the learning rate, noise_stddev and l2_penalty are traced, so `jax.vmap` over
states trains several seeds or hyperparameters at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from maze_jax.algorithms import Trainer
from maze_jax.algorithms.optim import set_learning_rate
from maze_jax.config import ConfigError, read
from maze_jax.devices import check_divisible, make_mesh, read_n_devices, replicate, shard_batch
from maze_jax.envs import EpisodeStats, EnvSpec, play_episodes
from maze_jax.evaluation import evaluate
from maze_jax.models import Policy, build_policy
from maze_jax.stats import episode_statistics


@dataclass(frozen=True)
class ESConfig:
    """Static sizes of the ES program (shapes); traced hyperparameters live in the state."""

    population: int = 128
    steps_per_member: int = 500
    n_eval_episodes: int = 10
    max_steps: int = 0  # episode cap in training rollouts (0 = the env's own); evaluation keeps the env's
    mesh: Any = None  # a jax.sharding.Mesh to split the population over (None: one device)


class ESState(struct.PyTreeNode):
    """Everything an ES run needs to continue: mean parameters, optimizer state, RNG key, counters, hyperparameters."""

    theta: jax.Array
    opt_state: Any
    key: jax.Array
    epoch: jax.Array
    noise_stddev: jax.Array
    l2_penalty: jax.Array


def centered_ranks(x: jax.Array) -> jax.Array:
    """Ranks of `x` scaled to [-0.5, 0.5] (OpenAI-ES fitness shaping: invariant to the scale of returns).

    Tied values share their average rank, so equal returns (say, every member at CartPole's 500) push
    the gradient nowhere instead of in an arbitrary direction set by the sort order.
    """
    ordered = jnp.sort(x)
    ranks = (jnp.searchsorted(ordered, x, side="left") + jnp.searchsorted(ordered, x, side="right") - 1) / 2
    return ranks.astype(jnp.float32) / (x.shape[0] - 1) - 0.5


def antithetic_population(theta: jax.Array, noise: jax.Array, sigma) -> jax.Array:
    """[theta + sigma*noise; theta - sigma*noise]: pair i is rows i and i + len(noise)."""
    return jnp.concatenate([theta + sigma * noise, theta - sigma * noise])


def es_gradient(fitness: jax.Array, noise: jax.Array) -> jax.Array:
    """Ascent direction g = sum_i (r_i+ - r_i-) noise_i / n_pairs, with r the centred ranks of `fitness`."""
    ranks = centered_ranks(fitness)
    n_pairs = noise.shape[0]
    weights = ranks[:n_pairs] - ranks[n_pairs:]
    return weights @ noise / n_pairs


def make_optimizer(name: str, step_size) -> optax.GradientTransformation:
    """Adam or SGD-with-momentum with the step size as an injected (traced, overridable) hyperparameter."""
    if name == "adam":
        return optax.inject_hyperparams(optax.adam)(learning_rate=step_size)
    if name == "sgd":
        return optax.inject_hyperparams(optax.sgd)(learning_rate=step_size, momentum=0.9)
    raise ConfigError(f"algorithm.optimizer.name={name!r} is unknown. Valid: adam, sgd")


def make_es(config: ESConfig, env_spec: EnvSpec, policy: Policy, optimizer_name: str = "adam"):
    """Pure `init(key, step_size, noise_stddev, l2_penalty) -> ESState`, `train_epoch(state) -> (state, metrics)`,
    `evaluate_state(state, key) -> EpisodeStats`, and `unravel(theta) -> policy params`."""
    env, env_params = env_spec.env, env_spec.params
    if config.max_steps and env_spec.horizon > config.max_steps:  # the cap is for training rollouts only
        env_params = env_params.replace(max_steps_in_episode=config.max_steps)
    obs_example = env_spec.observation_example()
    param_shapes = jax.eval_shape(policy.init, jax.random.key(0), obs_example)
    _, unravel = ravel_pytree(jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), param_shapes))
    optimizer = make_optimizer(optimizer_name, 0.0)

    @jax.jit
    def init(key, step_size, noise_stddev, l2_penalty) -> ESState:
        key, init_key = jax.random.split(key)
        theta, _ = ravel_pytree(policy.init(init_key, obs_example))
        opt_state = set_learning_rate(optimizer.init(theta), step_size)
        as_f32 = lambda v: jnp.asarray(v, jnp.float32)
        return replicate(ESState(theta, opt_state, key, jnp.int32(0), as_f32(noise_stddev), as_f32(l2_penalty)),
                         config.mesh)

    def population_act(params, obs):
        """Deterministic actions, member i's parameters on member i's observation."""
        out = jax.vmap(policy.apply)(params, obs)
        return policy.dist.to_env(policy.dist.mode(out))

    def train_epoch(state: ESState):
        key, noise_key, rollout_key = jax.random.split(state.key, 3)
        noise = jax.random.normal(noise_key, (config.population // 2, state.theta.shape[0]))
        thetas = antithetic_population(state.theta, noise, state.noise_stddev)
        params = shard_batch(jax.vmap(unravel)(thetas), config.mesh)  # once per epoch, outside the step loop
        episodes = play_episodes(env, env_params, lambda obs, _: population_act(params, obs), rollout_key,
                                 config.population, config.steps_per_member, mesh=config.mesh)
        g = es_gradient(episodes.mean_return_per_env(), noise)
        updates, opt_state = optimizer.update(-g + state.l2_penalty * state.theta, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        policy_norm = jnp.linalg.norm(theta)
        metrics = {
            **episode_statistics(episodes, "train"),
            "train_BaseEnvEvents/reward/step_count": jnp.int32(config.population * config.steps_per_member),
            "train_ESEvents/policy_grad_norm": jnp.linalg.norm(g),
            "train_ESEvents/policy_norm": policy_norm,
            "train_ESEvents/update_ratio": jnp.linalg.norm(updates) / jnp.maximum(policy_norm, 1e-12),
        }
        state = state.replace(theta=theta, opt_state=opt_state, key=key, epoch=state.epoch + 1)
        return replicate((state, metrics), config.mesh)

    def evaluate_state(state: ESState, key: jax.Array) -> EpisodeStats:
        """Deterministic episodes of the mean policy (one per env)."""
        return evaluate(policy, unravel(state.theta), env_spec, key, config.n_eval_episodes)

    return init, train_epoch, evaluate_state, unravel


def read_config(algorithm_cfg, runner_cfg, env_spec: EnvSpec) -> tuple[ESConfig, dict, str]:
    """Static ESConfig, traced hyperparameters and optimizer name from Maze's ES config names, range-checked."""
    a = "algorithm"
    population = read(algorithm_cfg, "n_rollouts_per_update", int, a, low=2, even=True)
    n_timesteps = read(algorithm_cfg, "n_timesteps_per_update", int, a, low=0)
    max_steps = read(algorithm_cfg, "max_steps", int, a, low=0)
    episode_length = min(env_spec.horizon, max_steps) if max_steps else env_spec.horizon
    steps = max(episode_length, math.ceil(n_timesteps / population))
    opt = algorithm_cfg.get("optimizer") or {}
    hparams = {
        "step_size": read(opt, "step_size", float, f"{a}.optimizer", low=0.0, low_inclusive=False),
        "noise_stddev": read(algorithm_cfg, "noise_stddev", float, a, low=0.0, low_inclusive=False),
        "l2_penalty": read(algorithm_cfg, "l2_penalty", float, a, low=0.0),
    }
    n_eval = read(runner_cfg, "n_eval_rollouts", int, "runner", low=1)
    mesh = make_mesh(read_n_devices(runner_cfg))
    check_divisible(population, mesh, "algorithm.n_rollouts_per_update")
    return ESConfig(population, steps, n_eval, max_steps, mesh), hparams, str(opt.get("name", "adam"))


def build(cfg, env_spec: EnvSpec, model: Any = None) -> Trainer:
    """The ES trainer (the `_target_` of `algorithm=es`): config read and checked, policy built, functions bound.

    `model` (a flax module) replaces the `model` config."""
    algorithm_cfg = cfg.algorithm
    policy = build_policy(cfg.model if model is None else model, env_spec)
    config, hparams, optimizer_name = read_config(algorithm_cfg, cfg.runner, env_spec)
    init, train_epoch, evaluate_state, unravel = make_es(config, env_spec, policy, optimizer_name)
    n_epochs = read(algorithm_cfg, "n_epochs", int, "algorithm", low=0)

    def with_hyperparams(state: ESState) -> ESState:
        return state.replace(opt_state=set_learning_rate(state.opt_state, hparams["step_size"]),
                             noise_stddev=jnp.float32(hparams["noise_stddev"]),
                             l2_penalty=jnp.float32(hparams["l2_penalty"]))

    return Trainer(
        name="es",
        policy=policy,
        n_epochs=n_epochs,
        init=lambda key: init(key, **hparams),
        init_with=lambda key, h: init(key, **h),
        hyperparams=hparams,
        train_epoch=train_epoch,
        evaluate=evaluate_state,
        policy_params=lambda state: unravel(state.theta),
        with_hyperparams=with_hyperparams,
        model_params=lambda state: {"policy": unravel(state.theta)},
        with_model=lambda state, params: state.replace(theta=ravel_pytree(params["policy"])[0]),
    )
