"""Auto-reset rollouts count each finished episode once, with the right return, length and statistics."""

import jax
import jax.numpy as jnp
import numpy as np

from conftest import Countdown
from maze_jax.envs import EpisodeStats, play_episodes
from maze_jax.stats import episode_statistics, median_from_histogram

TAG = "train_BaseEnvEvents/reward/"


def test_auto_reset_counts_every_finished_episode_and_drops_the_unfinished_one():
    env = Countdown(length=3)
    stats = play_episodes(env, env.default_params, lambda obs, k: jnp.zeros(obs.shape[0], jnp.int32),
                          jax.random.key(0), n_envs=2, n_steps=10)
    np.testing.assert_array_equal(stats.count, [3, 3])  # ends at steps 3, 6, 9; the 4th is unfinished
    np.testing.assert_array_equal(stats.length_sum, [9, 9])
    np.testing.assert_allclose(stats.mean_return_per_env(), [3.0, 3.0])
    assert int(stats.length_hist[3]) == 6 and int(stats.length_hist.sum()) == 6


def test_returns_follow_the_actions_and_first_episodes_keep_one_per_env():
    env = Countdown(length=2)
    act = lambda obs, k: jnp.array([0, 1], jnp.int32)  # env 1 earns 2 per step
    stats = play_episodes(env, env.default_params, act, jax.random.key(0), n_envs=2, n_steps=7)
    np.testing.assert_array_equal(stats.count, [3, 3])
    first = stats.first_episodes()
    np.testing.assert_array_equal(first.count, [1, 1])
    np.testing.assert_array_equal(first.return_mean, [2.0, 4.0])
    summary = episode_statistics(first, "eval")
    assert float(summary["eval_BaseEnvEvents/reward/mean"]) == 3.0
    assert int(summary["eval_BaseEnvEvents/reward/episode_count"]) == 2


def test_statistics_of_added_episodes():
    stats = EpisodeStats.zeros(n_envs=2, max_length=10)
    for done, ret, length in [([True, False], [1.0, 0], [1, 0]), ([False, True], [0, 5.0], [0, 5]),
                              ([True, True], [3.0, 7.0], [3, 7])]:
        stats = stats.add(jnp.array(done), jnp.array(ret), jnp.array(length))
    summary = episode_statistics(stats, "train")
    assert float(summary[TAG + "mean"]) == 4.0
    assert float(summary[TAG + "min"]) == 1.0 and float(summary[TAG + "max"]) == 7.0
    assert float(summary[TAG + "mean_step_count"]) == 4.0
    assert float(summary[TAG + "median_step_count"]) == 4.0
    assert int(summary[TAG + "episode_count"]) == 4
    np.testing.assert_allclose(float(summary[TAG + "std"]), np.std([1, 3, 5, 7]), rtol=1e-5)
    # the host-side table of per-episode values (evaluation, final, rollouts) says the same
    from maze_jax.shell.statistics import episode_table

    host = episode_table([1.0, 3.0, 5.0, 7.0, 0.0], [1, 3, 5, 7, 0], "train", ended=[True] * 4 + [False])
    for key, value in ((k, v) for k, v in summary.items() if not k.startswith("check/")):
        np.testing.assert_allclose(host[key], value, rtol=1e-5, err_msg=key)
    per_seed = episode_table([[1.0, 3.0], [5.0, 9.0]], [[1, 3], [5, 9]], "eval", per_seed=True)
    np.testing.assert_allclose(per_seed["eval_BaseEnvEvents/reward/mean"], [2.0, 7.0])
    assert np.isnan(episode_table([1.0], [1], "eval", ended=[False])["eval_BaseEnvEvents/reward/mean"])


def test_median_from_histogram_matches_numpy():
    values = np.array([3, 3, 9, 1, 4, 4, 4])
    hist = jnp.zeros(12, jnp.int32).at[values].add(1)
    assert float(median_from_histogram(hist)) == np.median(values)
    assert float(median_from_histogram(hist.at[9].add(1))) == np.median(np.append(values, 9))
    assert np.isnan(float(median_from_histogram(jnp.zeros(5, jnp.int32))))


def test_statistics_without_finished_episodes_are_nan_with_zero_count():
    summary = episode_statistics(EpisodeStats.zeros(3, 5), "eval")
    assert int(summary["eval_BaseEnvEvents/reward/episode_count"]) == 0
    assert np.isnan(float(summary["eval_BaseEnvEvents/reward/mean"]))


def test_reward_std_is_accurate_for_large_returns():
    # returns of 1e4 +- 1: E[x^2] - mean^2 in float32 cancels to 0 (or goes negative); the std is 1
    stats = EpisodeStats.zeros(n_envs=3, max_length=10)
    returns = np.array([[1e4 + 1, 1e4 - 1, 1e4 + 1], [1e4 - 1, 1e4 + 1, 1e4 - 1]], np.float32)
    for row in returns:
        stats = stats.add(jnp.ones(3, bool), jnp.asarray(row), jnp.full(3, 5))
    summary = episode_statistics(stats, "train")
    np.testing.assert_allclose(float(summary[TAG + "std"]), np.std(returns.astype(np.float64)), rtol=1e-3)
    np.testing.assert_allclose(float(summary[TAG + "mean"]), 1e4, rtol=1e-6)
    np.testing.assert_allclose(stats.mean_return_per_env(), returns.mean(0), rtol=1e-6)
