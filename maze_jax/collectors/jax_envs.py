"""The collector over JAX envs: an epoch's rollouts and updates as one pure, jittable function.

Every learner the same way: each update scans `n_rollout_steps` steps of `n_envs` envs (`run_steps`, the step
function every JAX-env rollout shares) into a `Trajectory` and hands it to the learner; `epoch_length` updates are
one `lax.scan`. A replay learner's warm-up steps (`Algorithm.warmup_steps`) are one more rollout, in `init`.
A learner of fresh episodes (ES's population, one member per env) gets rollouts that start from reset envs.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import Trajectory
from maze_jax.algorithms.metrics import episode_statistics, epoch_totals
from maze_jax.collectors import Trainer, TrainState
from maze_jax.collectors.devices import replicate, shard_batch
from maze_jax.collectors.evaluation import evaluate
from maze_jax.envs import EnvSpec, EpisodeStats
from maze_jax.envs.episodes import EnvBatch, env_keys, reported_names, run_steps
from maze_jax.envs.structured import sub_steps


def collect_rollout(explore, params, env_spec: EnvSpec, envs: EnvBatch, stats: EpisodeStats, key_act, key_env,
                    n_steps: int, mesh=None, mirrored: bool = False):
    """`n_steps` steps of every env in `envs` under `explore(params, obs, key, memory)` (`params`: what
    `Algorithm.acting` gives): (envs, stats, Trajectory). `mirrored`: see `env_keys`."""
    envs, stats, steps = run_steps(env_spec.env, env_spec.params, lambda obs, k, m: explore(params, obs, k, m), envs,
                                   stats, key_act, key_env, n_steps, mesh, mirrored=mirrored)
    experience = steps.record
    return envs, stats, Trajectory(steps.obs, experience.action, experience.log_prob, experience.value, steps.reward,
                                   steps.terminated, steps.truncated, steps.final_obs, envs.obs, experience.memory)


def fresh_episode_steps(algorithm: Algorithm, env_spec: EnvSpec) -> int:
    """Calls of `step` each env plays in a rollout of fresh episodes: one (capped) episode length, or
    `n_rollout_steps` if more. `episode_cap` counts whole env steps, each one call per sub-step."""
    calls_per_step = max(len(sub_steps(env_spec.env)), 1)
    capped = algorithm.episode_cap * calls_per_step if algorithm.episode_cap else env_spec.horizon
    return max(min(env_spec.horizon, capped), algorithm.config.n_rollout_steps)


def row_by_row(explore: Callable) -> Callable:
    """`explore` applied to each env on its own (a batch of one), with one key per env: how a learner of fresh
    episodes acts, so that antithetic pairs can share their key."""
    def one(acting, obs, key, memory):
        action, experience, memory = explore(*jax.tree.map(lambda x: x[None], (acting, obs)), key,
                                             jax.tree.map(lambda x: x[None], memory))
        return jax.tree.map(lambda x: x[0], (action, experience, memory))

    return jax.vmap(one)


def fresh_rollout(algorithm: Algorithm, env_spec: EnvSpec, acting, act_key, key, n_steps: int,
                  stats: EpisodeStats | None = None, mesh=None) -> tuple[EpisodeStats, Trajectory]:
    """`n_steps` steps of `n_envs` fresh envs, env i acting with row i of `acting` (`Algorithm.acting`'s, a leading
    env axis), envs i and i + n_envs / 2 from the same state, with the same env randomness and the same key to act
    with (antithetic pairs): the episodes' stats (added to `stats`) and the Trajectory."""
    n_envs = jax.tree.leaves(acting)[0].shape[0]
    stats = EpisodeStats.zeros(n_envs, n_steps, reported_names(env_spec.env, env_spec.params)) \
        if stats is None else stats
    reset_key, key = jax.random.split(key)
    envs = EnvBatch.reset(env_spec.env, env_spec.params, reset_key, n_envs, mirrored=True,
                          memory=algorithm.initial_memory(n_envs))
    explore = row_by_row(algorithm.explore)

    def mirrored_explore(acting, obs, key, memory):  # env i and env i + n / 2 act with the same key
        return explore(acting, obs, env_keys(key, 1, n_envs, mirrored=True)[0], memory)

    _, stats, trajectory = collect_rollout(mirrored_explore, shard_batch(acting, mesh), env_spec, envs, stats,
                                           act_key, key, n_steps, mesh, mirrored=True)
    return stats, trajectory


def rollout_trainer(algorithm: Algorithm, env_spec: EnvSpec) -> Trainer:
    """Any learner (`Algorithm`) on a JAX env: `epoch_length` updates of rollout + learner per call of
    `train_epoch`, one jitted program. With `fresh_episodes` (ES), each rollout starts from fresh, mirrored
    episodes of an env capped at `episode_cap`, and the collector's state is its env key alone."""
    config = algorithm.config
    mesh = config.mesh
    fresh = algorithm.fresh_episodes
    env_params = env_spec.params
    n_steps = fresh_episode_steps(algorithm, env_spec) if fresh else config.n_rollout_steps
    if fresh and algorithm.episode_cap and env_params.max_steps_in_episode > algorithm.episode_cap:
        env_params = env_params.replace(max_steps_in_episode=algorithm.episode_cap)  # training rollouts only
    train_spec = env_spec._replace(params=env_params)
    reported = reported_names(env_spec.env, env_params)

    def rollout(learner, envs, env_key, stats, n_steps: int, salt: int = 0):
        env_key, rollout_key = jax.random.split(env_key)
        act_key = jax.random.fold_in(learner.key, salt)  # the agent's randomness; `update` moves its key on
        if fresh:
            stats, trajectory = fresh_rollout(algorithm, train_spec, algorithm.acting(learner), act_key, rollout_key,
                                              n_steps, stats, mesh)
            return (), env_key, stats, trajectory
        envs, stats, trajectory = collect_rollout(algorithm.explore, algorithm.acting(learner), env_spec, envs, stats,
                                                  act_key, rollout_key, n_steps, mesh)
        return envs, env_key, stats, trajectory

    def init(agent_key, env_key, hyperparams=None):
        learner = algorithm.init(agent_key, algorithm.hyperparams if hyperparams is None else hyperparams)
        if fresh:  # no env runs on from one rollout to the next
            return replicate(TrainState(learner, env_key), mesh)
        reset_key, env_key = jax.random.split(env_key)
        envs = shard_batch(EnvBatch.reset(env_spec.env, env_params, reset_key, config.n_envs,
                                          memory=algorithm.initial_memory(config.n_envs)), mesh)
        if algorithm.warmup_steps:  # a replay learner's first steps, stored before update 0
            stats = EpisodeStats.zeros(config.n_envs, env_spec.horizon, reported)
            envs, env_key, _, trajectory = rollout(learner, envs, env_key, stats, algorithm.warmup_steps, salt=1)
            learner = algorithm.warmup(learner, trajectory)
        return replicate(TrainState(learner, (envs, env_key)), mesh)

    def one_update(carry, _):
        learner, (envs, env_key), stats = carry
        envs, env_key, stats, trajectory = rollout(learner, envs, env_key, stats, n_steps)
        learner, metrics = algorithm.update(learner, trajectory)
        return (learner, (envs, env_key), stats), metrics

    def train_epoch(state: TrainState):
        stats = EpisodeStats.zeros(config.n_envs, max(env_spec.horizon, n_steps), reported)
        collector = ((), state.envs) if fresh else state.envs
        (learner, collector, stats), metrics = jax.lax.scan(one_update, (state.learner, collector, stats), None,
                                                            length=config.epoch_length)
        metrics = {**episode_statistics(stats, "train"),
                   "train_BaseEnvEvents/reward/step_count": jnp.int32(config.epoch_length * n_steps * config.n_envs),
                   **epoch_totals(metrics)}
        return replicate((TrainState(learner, collector[1] if fresh else collector), metrics), mesh)

    def evaluate_state(state: TrainState, key):
        return evaluate(algorithm.policy, state.learner.params["policy"], env_spec, key, config.n_eval_episodes,
                        config.deterministic_eval)

    return Trainer(algorithm, init, train_epoch, evaluate_state, config.n_eval_episodes)


def jax_trainer(algorithm: Algorithm, env_spec: EnvSpec) -> Trainer:
    """One seed's trainer of `algorithm` on a JAX env (`collectors.seeds.with_seeds` maps it over seeds)."""
    return rollout_trainer(algorithm, env_spec)
