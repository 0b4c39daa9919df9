"""ES on Python envs plays what ES on JAX envs plays: antithetic pairs from the same env states with the same
sampling noise, statistics of the members' episodes alone, and `max_steps` in whole env steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import python_envs
from conftest import init_state, make_trainer


@pytest.mark.parametrize("deterministic, vectorization", [(True, "sync"), (False, "sync"), (False, "async")])
def test_antithetic_pairs_start_alike_and_share_their_sampling_noise_on_a_python_env(deterministic, vectorization):
    from maze_jax.algorithms import es
    from maze_jax.envs import make_env
    from maze_jax.models import build_policy
    from maze_jax.shell.collectors.host import EpisodeCollector

    spec = make_env("CartPole-v1", backend="gymnasium")
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [8]}, spec)
    algorithm = es.make_es(es.ESConfig(population=16, deterministic=deterministic), policy,
                           spec.observation_example())
    # a vanishing perturbation: both members of a pair act alike, so only their env states and noise could differ
    state = algorithm.init(jax.random.key(0), algorithm.hyperparams.replace(noise_stddev=jnp.float32(1e-9)))
    acting = jax.tree.map(lambda x: x[None], algorithm.acting(state))  # one seed
    collector = EpisodeCollector(algorithm, spec, n_slots=5, n_seeds=1, seed=0, vectorization=vectorization)
    try:  # 5 envs for 16 members: most members start in an env that another member used before
        trajectory, ended, _, steps = collector.collect(acting, jax.random.key(2)[None], jax.random.key(1))
    finally:
        collector.close()
    returns = np.asarray(trajectory.reward.sum(1))[0]
    np.testing.assert_array_equal(returns[:8], returns[8:])  # pair i is members i and i + 8
    np.testing.assert_array_equal(trajectory.obs[0, 0, :8], trajectory.obs[0, 0, 8:])
    assert len(set(returns[:8].tolist())) > 1  # the pairs themselves start from different states
    assert len(ended) == 16 and steps == int(returns.sum())  # CartPole pays 1 a step


def test_idle_envs_count_in_no_statistic_and_max_steps_counts_whole_steps_on_a_python_env():
    from maze_jax.envs.make import as_env_spec

    spec = as_env_spec(python_envs.Cutting(max_steps=180))
    # 6 members on 8 envs: 2 envs idle from the start; a cap of 3 whole steps is 6 calls of `step`
    _, trainer = make_trainer(["algorithm=es", "algorithm.n_rollouts_per_update=6", "algorithm.max_steps=3",
                               "runner.concurrency=8", "runner.n_eval_rollouts=1",
                               "model=tutorial_cutting_2d_struct_masked"], spec)
    try:
        _, metrics = trainer.train_epoch(init_state(trainer))
    finally:
        trainer.close()
    assert float(metrics["train_BaseEnvEvents/reward/episode_count"]) == 6
    assert float(metrics["train_BaseEnvEvents/reward/mean_step_count"]) == 6.0
    assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 36


def test_idle_envs_step_events_count_in_no_statistic():
    from maze_jax.shell.collectors.host import Episodes

    episodes = Episodes(2)
    for _ in range(3):  # env 1 is idle: its steps, events and episode end are no one's
        episodes.add(np.ones(2), np.array([False, True]), ({"E/x": np.array([1.0, 5.0])}, {}),
                     counted=np.array([True, False]))
    episodes.add(np.ones(2), np.array([True, True]), ({"E/x": np.array([2.0, 5.0])}, {}),
                 counted=np.array([True, False]))
    events = episodes.take_events()
    assert events.steps.tolist() == [4, 0] and events.episodes.tolist() == [1, 0]
    assert events.step_sum["E/x"].tolist() == [5.0, 0.0] and events.step_max["E/x"][0] == 2.0
    assert events.episode_total["E/x"].tolist() == [5.0, 0.0]
    assert episodes.take() == [(0, 4.0, 4)]
