"""Grids of traced hyperparameters in one compiled program (`+grid.<key>=[...]`)."""

import jax
import numpy as np
import pytest
from conftest import init_state, make_trainer, run_cli
from test_cli import only_run_dir

from maze_jax.config import ConfigError
from maze_jax.shell.grid import count_configs, read_grid
from maze_jax.shell.settings import compose_config, read_algorithm

PPO = ["env=cartpole", "algorithm=ppo", "runner.concurrency=4", "algorithm.n_rollout_steps=16",
       "algorithm.batch_size=32", "algorithm.epoch_length=2", "model.hidden_units=[8]", "runner.stop_when_solved=false"]


def grid_of(overrides, grid):
    cfg, _ = compose_config(overrides)
    return read_grid(grid, cfg.algorithm, cfg.runner, read_algorithm)


def test_a_grid_is_the_product_of_the_named_values_read_as_whole_algorithm_configs():
    grid = grid_of(PPO, {"lr": [1e-4, 3e-4, 1e-3], "entropy_coef": [0.0, 0.01]})
    assert grid.size == 6 and grid.keys == ("lr", "entropy_coef")
    assert grid.values[1] == (1e-4, 0.01) and grid.label(1) == "lr=0.0001 entropy_coef=0.01"
    np.testing.assert_allclose(grid.hyperparams.lr, [1e-4, 1e-4, 3e-4, 3e-4, 1e-3, 1e-3])
    np.testing.assert_allclose(grid.hyperparams.gamma, [0.98] * 6)  # the others as the algorithm config says
    assert grid.member_names(2)[:3] == ["config_0/seed_0", "config_0/seed_1", "config_1/seed_0"]
    assert grid.member_names(1) == [f"config_{k}" for k in range(6)]
    es = grid_of(["algorithm=es"], {"optimizer": {"step_size": [0.01, 0.02]}, "noise_stddev": 0.05})  # nested keys
    assert es.keys == ("optimizer.step_size", "noise_stddev") and es.size == 2
    np.testing.assert_allclose(es.hyperparams.noise_stddev, [0.05, 0.05])
    assert grid_of(PPO, None) is None and grid_of(PPO, {}) is None
    assert count_configs({"lr": [1, 2, 3], "optimizer": {"step_size": [1, 2]}}) == 6 and count_configs(None) == 1


@pytest.mark.parametrize("grid, message", [
    ({"n_rollout_steps": [16, 32]}, "grid.n_rollout_steps: n_rollout_steps is static (it shapes the compiled "
                                    "program), so one program cannot train several values of it: sweep it with "
                                    "--multirun. Keys that can be swept: "),
    ({"lrr": [0.1]}, "grid.lrr: the algorithm group has no key lrr. Did you mean lr? Keys that can be swept:"),
    ({"lr": []}, "grid.lr=[]: give at least one value"),
    ({"lr": [0.001, -1]}, "grid: algorithm.lr=-1.0: must be > 0.0"),
    ({"gamma": ["high"]}, "grid: algorithm.gamma='high': expected a number"),
    ([0.1, 0.2], "grid=[0.1, 0.2]: expected keys of the algorithm group"),
])
def test_bad_grids_are_one_line_naming_what_can_be_swept(grid, message):
    with pytest.raises(ConfigError) as error:
        grid_of(PPO, grid)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)
    if "Keys that can be swept" in message:
        assert "lr, gamma, gae_lambda" in str(error.value) and "n_rollout_steps" not in str(error.value).split(
            "swept: ")[1]


@pytest.mark.slow
def test_each_configuration_trains_as_a_run_of_its_own_values_on_the_same_seeds():
    # the grid's member k is the run of configuration k alone: same keys, same program up to the member axis
    _, grid_trainer = make_trainer([*PPO, "+grid.lr=[0.0003,0.003]"])
    state = init_state(grid_trainer)
    leaves = jax.tree.leaves(state.learner.params)
    assert all(np.array_equal(x[0], x[1]) for x in leaves)  # the same seed: the same initial networks
    state, _ = jax.jit(grid_trainer.train_epoch)(state)
    _, single = make_trainer([*PPO, "algorithm.lr=0.003"])  # configuration 1
    alone, _ = jax.jit(single.train_epoch)(init_state(single))
    jax.tree.map(lambda g, s: np.testing.assert_allclose(g[1], s, rtol=2e-5, atol=1e-6), state.learner.params,
                 alone.learner.params)
    assert not np.allclose(jax.tree.leaves(state.learner.params)[0][0], jax.tree.leaves(state.learner.params)[0][1])


def test_a_python_env_grid_gets_envs_of_its_own_per_member():
    _, trainer = make_trainer([*PPO, "env=gymnasium", "env.name=CartPole-v1", "runner=dev",
                               "+grid.entropy_coef=[0,0.1,0.2]", "runner.n_seeds=2"])
    try:
        state = init_state(trainer)
        assert trainer.n_seeds == 6
        np.testing.assert_allclose(state.learner.hparams.entropy_coef, [0, 0, 0.1, 0.1, 0.2, 0.2])
        state, metrics = trainer.train_epoch(state)
        assert np.shape(metrics["train_BaseEnvEvents/reward/mean"]) == (6,)
    finally:
        trainer.close()


@pytest.mark.cli
def test_a_grid_trains_reports_rolls_out_and_resumes_from_the_command_line(tmp_path, cache_dir):
    from maze_jax.shell.event_history import scalar_history

    args = [*PPO, "runner=dev", "algorithm.n_epochs=2", "+grid.lr=[0.0003,0.003]", "runner.n_seeds=2",
            "seeding.agent_base_seed=1", "seeding.env_base_seed=2"]
    proc = run_cli([*args, f"log_base_dir={tmp_path / 'g'}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "(4 members, every configuration's seeds: counts are totals" in out
    assert "config | hyperparameters | train mean |  eval mean |       best (epoch)" in out  # noqa: E501
    assert f"     1 | {'lr=0.003':<15} |" in out
    assert "Grid of 2 configurations (grid_summary.csv, grid_curves.png, each the mean of its 2 seeds" in out
    run = only_run_dir(tmp_path / "g")
    rows = (run / "grid_summary.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[2].startswith('1,"lr=0.003",')
    assert (run / "grid_curves.png").stat().st_size > 1000
    tags = {tag for tag, *_ in scalar_history(str(run), 10**6)}
    assert {"config_1/seed_0/eval_BaseEnvEvents/reward/mean", "config_0/seed_1/final_BaseEnvEvents/reward/mean"} \
        <= tags
    rollout = run_cli([f"input_dir={run}", "policy.config=1", "policy.seed=0", "runner.n_episodes=2",
                       f"log_base_dir={tmp_path / 'r'}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr[-3000:]
    bad = run_cli([f"input_dir={run}", "policy.config=2", f"log_base_dir={tmp_path / 'r'}"], tmp_path, cache_dir,
                  module="maze_jax.rollout")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1] == \
        "Error: config=2: the run trained configurations 0 to 1"
    resumed = run_cli([f"input_dir={run}", "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'c'}"], tmp_path,
                      cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Iteration 2 *" in resumed.stdout and "Iteration 1 *" not in resumed.stdout
    summary = (only_run_dir(tmp_path / "c") / "grid_summary.csv").read_text().splitlines()
    assert summary[1].split(",")[-2] == "3"  # the whole grid went on, its curves continue the parent's


@pytest.mark.cli
def test_a_bad_grid_exits_2_in_one_line_without_a_run_directory(tmp_path, cache_dir):
    proc = run_cli([*PPO, "+grid.n_rollout_steps=[16,32]", f"log_base_dir={tmp_path / 'g'}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and "is static" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g").exists()


def test_a_grid_too_large_for_memory_is_refused_before_compiling():
    with pytest.raises(ConfigError) as error:  # SAC's replay buffers: 8 configurations x 1000 seeds of 1e6 steps
        make_trainer(["+experiment=pendulum_sac", "algorithm.replay_buffer_size=1000000", "runner.n_seeds=1000",
                      "+grid.lr=[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]"])
    assert "GiB for 1000 seed(s) of each of 8 grid configurations" in str(error.value)


def test_a_resume_keeps_the_grids_size(tmp_path):
    from omegaconf import OmegaConf

    from maze_jax.shell.session import check_compatible

    cfg, _ = compose_config([*PPO, "+grid.lr=[0.1,0.2]", "runner.n_seeds=2"])
    (tmp_path / "hydra_config.yaml").write_text(OmegaConf.to_yaml(cfg))
    check_compatible(str(tmp_path), compose_config([*PPO, "+grid.lr=[0.3,0.4]", "runner.n_seeds=2"])[0])  # values
    for other in (["+grid.lr=[0.1,0.2,0.3]", "runner.n_seeds=2"], ["+grid.lr=[0.1,0.2]", "runner.n_seeds=1"], []):
        with pytest.raises(ConfigError) as error:
            check_compatible(str(tmp_path), compose_config([*PPO, *other])[0])
        assert "trained 4 members (grid configurations x runner.n_seeds)" in str(error.value)


@pytest.mark.parametrize("overrides, key, values", [
    (["env=cartpole", "algorithm=es", "algorithm.n_rollouts_per_update=4"], "optimizer.step_size", [0.01, 0.02]),
    (["env=cartpole", "algorithm=a2c"], "gamma", [0.9, 0.99]),
    (["+experiment=cartpole_sac", "algorithm.replay_buffer_size=1000"], "tau", [0.005, 0.01]),
    (["env=cartpole", "algorithm=impala"], "entropy_coef", [0.0, 0.1]),
])
def test_every_learner_takes_a_grid(overrides, key, values):
    _, trainer = make_trainer(["model.hidden_units=[4]", *overrides,
                               f"+grid.{key}=[{','.join(map(str, values))}]", "runner.n_seeds=2"])
    hparams = jax.eval_shape(trainer.init, jax.random.key(0), jax.random.key(1)).learner.hparams
    assert jax.tree.leaves(hparams)[0].shape == (4,)  # 2 configurations x 2 seeds
    state = jax.jit(trainer.init)(jax.random.key(0), jax.random.key(1))
    np.testing.assert_allclose(getattr(state.learner.hparams, key.rpartition(".")[2]), np.repeat(values, 2),
                               rtol=1e-6)
