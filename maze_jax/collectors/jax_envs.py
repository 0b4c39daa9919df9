"""The collector over JAX envs: an epoch's rollouts and updates as one pure, jittable function.

PPO, A2C, SAC and IMPALA: each update scans `n_rollout_steps` steps of `n_envs` envs (`run_steps`, the step
function every JAX-env rollout shares) into a `Trajectory` and hands it to the learner; `epoch_length` updates are
one `lax.scan`. A replay learner's warm-up steps (`Algorithm.warmup_steps`) are one more rollout, in `init`.
ES: the population from `ask` plays its episodes in one vmapped scan, and `update` takes their fitness.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import Trajectory
from maze_jax.algorithms.metrics import episode_statistics, epoch_totals
from maze_jax.collectors import Trainer, TrainState
from maze_jax.collectors.devices import replicate, shard_batch
from maze_jax.collectors.evaluation import evaluate
from maze_jax.envs import EnvSpec, EpisodeStats, play_episodes
from maze_jax.envs.episodes import EnvBatch, env_keys, reported_names, run_steps
from maze_jax.envs.structured import sub_steps


def collect_rollout(explore, params, env_spec: EnvSpec, envs: EnvBatch, stats: EpisodeStats, key_act, key_env,
                    n_steps: int, mesh=None):
    """`n_steps` steps of every env in `envs` under `explore(params, obs, key, memory)` (`params`: what
    `Algorithm.acting` gives): (envs, stats, Trajectory)."""
    first_memory = envs.memory
    envs, stats, steps = run_steps(env_spec.env, env_spec.params, lambda obs, k, m: explore(params, obs, k, m), envs,
                                   stats, key_act, key_env, n_steps, mesh)
    experience = steps.record
    return envs, stats, Trajectory(steps.obs, experience.action, experience.log_prob, experience.value, steps.reward,
                                   steps.terminated, steps.truncated, steps.final_obs, envs.obs, first_memory)


def rollout_trainer(algorithm: Algorithm, env_spec: EnvSpec) -> Trainer:
    """A learner of rollouts (PPO, A2C, SAC, IMPALA, one's own) on a JAX env: `epoch_length` updates of rollout +
    learner per call of `train_epoch`."""
    config = algorithm.config
    mesh = config.mesh

    def rollout(learner, envs, env_key, stats, n_steps: int, salt: int = 0):
        env_key, rollout_key = jax.random.split(env_key)
        act_key = jax.random.fold_in(learner.key, salt)  # the agent's randomness; `update` moves its key on
        envs, stats, trajectory = collect_rollout(algorithm.explore, algorithm.acting(learner), env_spec, envs,
                                                  stats, act_key, rollout_key, n_steps, mesh)
        return envs, env_key, stats, trajectory

    def init(agent_key, env_key, hyperparams=None):
        reset_key, env_key = jax.random.split(env_key)
        envs = shard_batch(EnvBatch.reset(env_spec.env, env_spec.params, reset_key, config.n_envs,
                                          memory=algorithm.initial_memory(config.n_envs)), mesh)
        learner = algorithm.init(agent_key, algorithm.hyperparams if hyperparams is None else hyperparams)
        if algorithm.warmup_steps:  # a replay learner's first steps, stored before update 0
            stats = EpisodeStats.zeros(config.n_envs, env_spec.horizon, reported_names(env_spec.env, env_spec.params))
            envs, env_key, _, trajectory = rollout(learner, envs, env_key, stats, algorithm.warmup_steps, salt=1)
            learner = algorithm.warmup(learner, trajectory)
        return replicate(TrainState(learner, (envs, env_key)), mesh)

    def one_update(carry, _):
        learner, (envs, env_key), stats = carry
        envs, env_key, stats, trajectory = rollout(learner, envs, env_key, stats, config.n_rollout_steps)
        learner, metrics = algorithm.update(learner, trajectory)
        return (learner, (envs, env_key), stats), metrics

    def train_epoch(state: TrainState):
        stats = EpisodeStats.zeros(config.n_envs, env_spec.horizon, reported_names(env_spec.env, env_spec.params))
        (learner, envs, stats), metrics = jax.lax.scan(one_update, (state.learner, state.envs, stats), None,
                                                       length=config.epoch_length)
        metrics = {**episode_statistics(stats, "train"),
                   "train_BaseEnvEvents/reward/step_count": jnp.int32(
                       config.epoch_length * config.n_rollout_steps * config.n_envs),
                   **epoch_totals(metrics)}
        return replicate((TrainState(learner, envs), metrics), mesh)

    def evaluate_state(state: TrainState, key):
        return evaluate(algorithm.policy, state.learner.params["policy"], env_spec, key, config.n_eval_episodes,
                        config.deterministic_eval)

    return Trainer(algorithm, init, train_epoch, evaluate_state, config.n_eval_episodes)


def es_steps_per_member(config, env_spec: EnvSpec) -> int:
    """Calls of `step` each member plays in an update: one (capped) episode length, or more for
    `n_timesteps_per_update`. `max_steps` counts whole env steps, each one call per sub-step."""
    calls_per_step = max(len(sub_steps(env_spec.env)), 1)
    capped = config.max_steps * calls_per_step if config.max_steps else env_spec.horizon
    return max(min(env_spec.horizon, capped), math.ceil(config.n_timesteps_per_update / config.population))


def play_population(policy, population, env, env_params, key, n_steps: int, mesh=None,
                    deterministic: bool = True) -> EpisodeStats:
    """Member i of `population` (policy parameters, leading member axis) plays env i for `n_steps` steps, on the
    mode or sampling; antithetic pairs (members i and i + P / 2) meet the same env states and randomness, and the
    same sampling noise."""
    n_members = jax.tree.leaves(population)[0].shape[0]

    def act(obs, key, memory):  # member i's parameters on member i's observation and memory
        out, memory = jax.vmap(policy.apply_with_memory)(population, obs, memory)
        if deterministic:
            return policy.dist.to_env(policy.dist.mode(out)), memory
        keys = env_keys(key, 1, n_members, mirrored=True)[0]
        return policy.dist.to_env(jax.vmap(policy.dist.sample)(keys, out)), memory

    return play_episodes(env, env_params, act, key, n_members, n_steps, mesh=mesh, mirrored=True, count_events=True,
                         memory=policy.initial_memory(n_members))


def es_trainer(algorithm: Algorithm, env_spec: EnvSpec) -> Trainer:
    """ES on a JAX env: one update per call of `train_epoch`, the whole population in one vmapped rollout."""
    config = algorithm.config
    mesh, policy = config.mesh, algorithm.policy
    env_params = env_spec.params
    if config.max_steps and env_params.max_steps_in_episode > config.max_steps:  # for training rollouts only
        env_params = env_params.replace(max_steps_in_episode=config.max_steps)
    steps = es_steps_per_member(config, env_spec)

    def init(agent_key, env_key, hyperparams=None):
        learner = algorithm.init(agent_key, algorithm.hyperparams if hyperparams is None else hyperparams)
        return replicate(TrainState(learner, env_key), mesh)

    def train_epoch(state: TrainState):
        env_key, rollout_key = jax.random.split(state.envs)
        population = shard_batch(algorithm.ask(state.learner), mesh)  # once per epoch, outside the step loop
        episodes = play_population(policy, population, env_spec.env, env_params, rollout_key, steps, mesh,
                                   config.deterministic)
        learner, metrics = algorithm.update(state.learner, episodes.mean_return_per_env())
        metrics = {**episode_statistics(episodes, "train"),
                   "train_BaseEnvEvents/reward/step_count": jnp.int32(config.population * steps), **metrics}
        return replicate((TrainState(learner, env_key), metrics), mesh)

    def evaluate_state(state: TrainState, key):
        return evaluate(policy, state.learner.params["policy"], env_spec, key, config.n_eval_episodes,
                        config.deterministic)

    return Trainer(algorithm, init, train_epoch, evaluate_state, config.n_eval_episodes)


def jax_trainer(algorithm: Algorithm, env_spec: EnvSpec) -> Trainer:
    """One seed's trainer of `algorithm` on a JAX env (`collectors.seeds.with_seeds` maps it over seeds)."""
    return (es_trainer if algorithm.ask is not None else rollout_trainer)(algorithm, env_spec)
