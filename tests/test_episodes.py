"""Auto-reset rollouts record each finished episode once, with the right return, length and statistics."""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import Countdown
from maze_jax.envs import play_episodes
from maze_jax.stats import episode_statistics


def test_auto_reset_records_every_episode_end():
    env = Countdown(length=3)
    record = play_episodes(env, env.default_params, lambda obs, k: jnp.zeros(obs.shape[0], jnp.int32),
                           jax.random.key(0), n_envs=2, n_steps=10)
    assert record.done.shape == (10, 2)
    np.testing.assert_array_equal(np.nonzero(record.done[:, 0])[0], [2, 5, 8])  # ends every 3 steps
    np.testing.assert_array_equal(record.returns[record.done], 3.0)
    np.testing.assert_array_equal(record.lengths[record.done], 3)


def test_returns_follow_the_actions_and_first_episodes_keep_one_per_env():
    env = Countdown(length=2)
    act = lambda obs, k: jnp.array([0, 1], jnp.int32)  # env 1 earns 2 per step
    record = play_episodes(env, env.default_params, act, jax.random.key(0), n_envs=2, n_steps=7)
    first = record.first_episode_per_env()
    assert first.done.shape == (1, 2) and bool(first.done.all())
    np.testing.assert_array_equal(first.returns[0], [2.0, 4.0])
    np.testing.assert_allclose(record.mean_return_per_env(), [2.0, 4.0])


def test_episode_statistics_over_masked_episodes():
    done = jnp.array([[True, False, True], [False, True, True]])
    returns = jnp.array([[1.0, 99.0, 3.0], [99.0, 5.0, 7.0]])
    lengths = jnp.array([[1, 99, 3], [99, 5, 7]])
    from maze_jax.envs import EpisodeRecord

    stats = episode_statistics(EpisodeRecord(done, returns, lengths), "train")
    tag = "train_BaseEnvEvents/reward/"
    assert float(stats[tag + "mean"]) == 4.0
    assert float(stats[tag + "min"]) == 1.0 and float(stats[tag + "max"]) == 7.0
    assert float(stats[tag + "median_step_count"]) == 4.0
    assert int(stats[tag + "episode_count"]) == 4
    np.testing.assert_allclose(float(stats[tag + "std"]), np.std([1, 3, 5, 7]), rtol=1e-6)


def test_episode_statistics_without_finished_episodes_are_nan_with_zero_count():
    from maze_jax.envs import EpisodeRecord

    record = EpisodeRecord(jnp.zeros((3, 2), bool), jnp.ones((3, 2)), jnp.ones((3, 2), jnp.int32))
    stats = episode_statistics(record, "eval")
    assert int(stats["eval_BaseEnvEvents/reward/episode_count"]) == 0
    assert np.isnan(float(stats["eval_BaseEnvEvents/reward/mean"]))
