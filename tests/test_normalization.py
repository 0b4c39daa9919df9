"""Observation normalisation: statistics, strategies, config priority, and the statistics' round trip through
checkpoints (resume, load_policy, rollout)."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from maze_jax.config import ConfigError
from maze_jax.envs import make_gymnax
from maze_jax.envs.cutting_2d import make_cutting_2d
from maze_jax.envs.normalization import KeySettings, compute_statistics, normalize
from maze_jax.shell.wrappers import read_normalization, wrap_env


def test_statistics_reduce_the_configured_axes():
    samples = np.arange(24, dtype=np.float32).reshape(6, 2, 2)
    scalar = compute_statistics(samples, KeySettings("mean_zero_std_one", None))
    assert scalar["mean"].shape == (1, 1) and scalar["mean"] == pytest.approx(11.5)
    per_element = compute_statistics(samples, KeySettings("mean_zero_std_one", (0,)))
    assert per_element["mean"].shape == (2, 2)
    np.testing.assert_allclose(per_element["mean"], samples.mean(0))
    ranges = compute_statistics(samples, KeySettings("range_zero_one", (0, 1)))
    np.testing.assert_allclose(ranges["min"], [[0, 1]])
    np.testing.assert_allclose(ranges["max"], [[22, 23]])


def test_strategies_normalise_and_clip():
    x = jnp.array([0.0, 5.0, 10.0])
    z = normalize(x, KeySettings("mean_zero_std_one"), {"mean": 5.0, "std": 5.0})
    np.testing.assert_allclose(z, [-1.0, 0.0, 1.0])
    np.testing.assert_allclose(normalize(x, KeySettings("mean_zero_std_one"), {"mean": 1.0, "std": 0.0}), x - 1.0)
    r = normalize(x, KeySettings("range_zero_one", clip_range=(None, 0.8)), {"min": 0.0, "max": 10.0})
    np.testing.assert_allclose(r, [0.0, 0.5, 0.8])


def test_config_priority_exclusions_and_errors():
    obs = make_cutting_2d("struct_masked").observation_example()
    node = {"default_strategy": "range_zero_one", "default_statistics": {"min": 0.0, "max": 4.0},
            "exclude": ["ordered_piece"],
            "manual_config": {"inventory_size": {"strategy": "mean_zero_std_one",
                                                 "statistics": {"mean": 25.0, "std": 10.0}},
                              "inventory": {"strategy_config": {"axis": [0]}}}}
    settings, given = read_normalization(node, obs)
    # masks (bool), actor_id and excluded keys are left alone
    assert set(settings) == {"inventory", "inventory_size", "selected_piece"}
    assert settings["inventory_size"].strategy == "mean_zero_std_one" and settings["inventory"].axis == (0,)
    assert float(given["inventory_size"]["mean"]) == 25.0  # manual beats default
    assert float(given["selected_piece"]["max"]) == 4.0  # default statistics
    bad = [({"default_strategy": "zscore"}, "unknown"), ({"exclude": ["nope"]}, "does not exist"),
           ({"manual_config": {"inventory": {"statistics": {"mean": 0.0}}}}, "needs statistics"),
           ({"default_strategy_config": {"axis": [1]}}, "including 0")]
    for node, message in bad:
        with pytest.raises(ConfigError, match=message):
            read_normalization(node, obs)


def test_wrapped_env_normalises_observations_and_final_observations():
    spec = make_gymnax("CartPole-v1")
    wrappers = {"observation_normalization": {"default_strategy_config": {"axis": [0]}}}
    wrapped = wrap_env(spec, wrappers, n_samples=2000, echo=lambda *a, **k: None)
    stats = wrapped.env.statistics["observation"]
    assert stats["mean"].shape == (4,) and (stats["std"] > 0).all()
    obs, state = wrapped.env.reset(jax.random.key(1), wrapped.params)
    raw, _ = spec.env.reset(jax.random.key(1), spec.params)
    np.testing.assert_allclose(obs, (raw - stats["mean"]) / stats["std"], rtol=1e-5)
    _, _, _, _, _, info = wrapped.env.step(jax.random.key(2), state, 0, wrapped.params)
    _, _, _, _, _, raw_info = spec.env.step(jax.random.key(2), state, 0, spec.params)
    np.testing.assert_allclose(info["final_observation"], (raw_info["final_observation"] - stats["mean"]) / stats["std"],
                               rtol=1e-5)
    with pytest.raises(ConfigError, match="not a wrapper class"):
        wrap_env(spec, {"frame_stack": {}})


TRAIN = ["env=cartpole", "algorithm=ppo", "wrappers=vector_obs", "runner=dev", "runner.normalization_samples=500",
         "model.hidden_units=[16]", "algorithm.n_epochs=1", "algorithm.epoch_length=2", "algorithm.n_rollout_steps=16",
         "algorithm.batch_size=32", "seeding.agent_base_seed=1", "seeding.env_base_seed=2"]


@pytest.mark.cli
def test_statistics_round_trip_through_checkpoints_resume_and_rollout(tmp_path, cache_dir):
    from maze_jax.trained_policy import load_policy
    from maze_jax.shell.resume import stored_statistics

    proc = run_cli([*TRAIN, f"log_base_dir={tmp_path}/a"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "estimated from 500 random-policy observations" in proc.stdout
    final_mean = re.search(r"final\s+BaseEnvEvents\s+reward\s+mean\s+\|\s+(\S+)", proc.stdout).group(1)
    run_dir = next((tmp_path / "a").glob("*/*"))
    saved = stored_statistics(str(run_dir))["observation"]
    assert set(saved) == {"mean", "std"} and saved["std"] > 0
    # resume with other estimation settings: the stored statistics are used, not estimated again
    proc = run_cli([*TRAIN, f"input_dir={run_dir}", "runner.normalization_samples=50", "algorithm.n_epochs=2",
                    f"log_base_dir={tmp_path}/b"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "restored from the checkpoint" in proc.stdout and "estimated" not in proc.stdout
    resumed = stored_statistics(str(next((tmp_path / "b").glob("*/*"))))["observation"]
    np.testing.assert_array_equal(resumed["mean"], saved["mean"])
    policy = load_policy(str(run_dir))
    np.testing.assert_array_equal(policy.env_spec.env.statistics["observation"]["std"], saved["std"])
    # compute_action normalises raw observations as training did
    raw = np.array([0.01, 0.2, -0.03, 0.1], np.float32)
    expected = policy.policy.act(policy.params, ((raw - saved["mean"]) / saved["std"])[None], jax.random.key(0), True)
    assert int(policy.compute_action(raw)) == int(expected[0])
    proc = run_cli([f"input_dir={run_dir}", "runner.n_episodes=10", f"log_base_dir={tmp_path}/r"], tmp_path,
                   cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    assert "restored from the checkpoint" in proc.stdout
    rollout_mean = re.search(r"rollout\s+BaseEnvEvents\s+reward\s+mean\s+\|\s+(\S+)", proc.stdout).group(1)
    assert rollout_mean == final_mean  # the same normalised episodes as the run's final evaluation
