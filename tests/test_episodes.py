"""Auto-reset rollouts count each finished episode once, with the right return, length and statistics."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import Countdown
from maze_jax.envs import EpisodeStats, play_episodes
from maze_jax.algorithms.metrics import episode_statistics, median_from_histogram

TAG = "train_BaseEnvEvents/reward/"


def test_auto_reset_counts_every_finished_episode_and_drops_the_unfinished_one():
    env = Countdown(length=3)
    stats = play_episodes(env, env.default_params, lambda obs, k: jnp.zeros(obs.shape[0], jnp.int32),
                          jax.random.key(0), n_envs=2, n_steps=10)
    np.testing.assert_array_equal(stats.count, [3, 3])  # ends at steps 3, 6, 9; the 4th is unfinished
    np.testing.assert_array_equal(stats.length_sum, [9, 9])
    np.testing.assert_allclose(stats.return_mean, [3.0, 3.0])
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
    from maze_jax.algorithms.metrics import episode_table

    host = episode_table([1.0, 3.0, 5.0, 7.0, 0.0], [1, 3, 5, 7, 0], "train", ended=[True] * 4 + [False])
    for key, value in ((k, v) for k, v in summary.items() if not k.startswith("check/")):
        np.testing.assert_allclose(host[key], value, rtol=1e-5, err_msg=key)
    per_seed = episode_table([[1.0, 3.0], [5.0, 9.0]], [[1, 3], [5, 9]], "eval", per_seed=True)
    np.testing.assert_allclose(per_seed["eval_BaseEnvEvents/reward/mean"], [2.0, 7.0])
    assert np.isnan(episode_table([1.0], [1], "eval", ended=[False])["eval_BaseEnvEvents/reward/mean"])


def test_integer_observations_are_never_counted_as_non_finite():
    stats = EpisodeStats.zeros(n_envs=2, max_length=5)
    checked = stats.check(jnp.array([1.0, jnp.nan]), {"grid": jnp.zeros((2, 3, 3), jnp.uint8)})
    np.testing.assert_array_equal(checked.bad_observations, [0, 0])  # a grid of ids cannot be NaN
    np.testing.assert_array_equal(checked.bad_rewards, [0, 1])
    checked = stats.check(jnp.ones(2), {"grid": jnp.zeros((2, 3), jnp.int32), "x": jnp.array([[0.0], [jnp.inf]])})
    np.testing.assert_array_equal(checked.bad_observations, [0, 1])


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
    np.testing.assert_allclose(stats.return_mean, returns.mean(0), rtol=1e-6)


class Reporting(Countdown):
    """Countdown that reports events (`Shop/sold`: the action; `ticks`: 1 a step) and a KPI (`left_at_end`)."""

    def step_env(self, key, state, action, params):
        obs, state, reward, done, _ = super().step_env(key, state, action, params)
        return obs, state, reward, done, {"events": {"Shop/sold": action.astype(jnp.float32),
                                                     "ticks": jnp.float32(1.0)},
                                          "kpis": {"left_at_end": state.left.astype(jnp.float32) + action}}


def test_env_events_and_kpis_are_counted_per_step_per_episode_and_at_episode_ends():
    from maze_jax.envs.episodes import reported_names

    env = Reporting(length=3)
    assert reported_names(env, env.default_params) == (("Shop/sold", "ticks"), ("left_at_end",))
    act = lambda obs, k: jnp.array([0, 1], jnp.int32)  # env 1 sells every step
    stats = play_episodes(env, env.default_params, act, jax.random.key(0), n_envs=2, n_steps=7, count_events=True)
    rows = episode_statistics(stats, "train")
    # 14 steps, 7 of them sales; 4 episodes ended (2 per env), env 1's with 3 sales each
    assert float(rows["train_Shop/sold/step_mean"]) == 0.5 and float(rows["train_Shop/sold/step_max"]) == 1.0
    assert float(rows["train_Shop/sold/mean_episode_total"]) == 1.5
    assert float(rows["train_CustomEvents/ticks/mean_episode_total"]) == 3.0  # a name without a group
    # the KPI at each episode's last step: 0 in env 0, 1 in env 1
    assert float(rows["train_BaseEnvEvents/kpi/mean/left_at_end"]) == 0.5
    assert float(rows["train_BaseEnvEvents/kpi/std/left_at_end"]) == 0.5
    assert float(rows["train_BaseEnvEvents/kpi/min/left_at_end"]) == 0.0
    assert float(rows["train_BaseEnvEvents/kpi/max/left_at_end"]) == 1.0
    # an env that reports nothing carries nothing extra
    plain = play_episodes(Countdown(3), Countdown(3).default_params, act, jax.random.key(0), 2, 7, count_events=True)
    assert plain.events is None and not any("kpi" in k for k in episode_statistics(plain, "train"))


@pytest.mark.cli
def test_the_cutting_env_reports_mazes_inventory_and_cutting_events_and_its_raw_piece_kpi():
    from conftest import make_trainer

    _, trainer = make_trainer(["env=tutorial_cutting_2d_struct_masked", "model=tutorial_cutting_2d_struct_masked",
                               "algorithm=ppo", "algorithm.epoch_length=12", "runner.concurrency=4",
                               "algorithm.n_rollout_steps=64", "algorithm.batch_size=64"])
    state = trainer.init(jax.random.key(0), jax.random.key(1))
    _, metrics = jax.jit(trainer.train_epoch)(state)
    kpi = float(metrics["train_BaseEnvEvents/kpi/mean/raw_piece_usage_per_step"])
    reward = float(metrics["train_BaseEnvEvents/reward/mean"])
    # with the masks every cut is valid, so an episode's return is minus its raw pieces: usage = -return / 180
    assert kpi == pytest.approx(-reward / 180, abs=1e-6)
    assert float(metrics["train_CuttingEvents/invalid_cut/mean_episode_total"]) == 0.0
    assert float(metrics["train_CuttingEvents/valid_cut/mean_episode_total"]) == 180.0
    assert 1.0 <= float(metrics["train_InventoryEvents/pieces_in_inventory/step_max"]) <= 50.0
    assert float(metrics["train_InventoryEvents/piece_replenished/mean_episode_total"]) == pytest.approx(-reward)


def test_an_evaluation_ends_when_every_env_has_ended_an_episode_not_at_the_time_limit():
    from maze_jax.envs.episodes import EnvBatch, run_until_ended

    env = Countdown(length=3)
    act = lambda obs, k, memory: (jnp.zeros(obs.shape[0], jnp.int32),) * 2 + (memory,)  # noqa: E731
    envs = EnvBatch.reset(env, env.default_params, jax.random.key(1), 4)
    stats, steps = jax.jit(lambda: run_until_ended(env, env.default_params, act, envs, EpisodeStats.zeros(4, 100_000),
                                                   jax.random.key(2), jax.random.key(3), 100_000))()
    assert int(steps) == 3  # not the 100,000 steps of the time limit
    full = play_episodes(env, env.default_params, lambda obs, k: jnp.zeros(obs.shape[0], jnp.int32),
                         jax.random.key(0), n_envs=4, n_steps=10)
    quick = play_episodes(env, env.default_params, lambda obs, k: jnp.zeros(obs.shape[0], jnp.int32),
                          jax.random.key(0), n_envs=4, n_steps=10, until_ended=True)
    for a, b in zip(full.first_episodes(), quick.first_episodes()):  # the same first episodes, step for step
        np.testing.assert_array_equal(a, b)
