"""`algorithm=sac` and `algorithm=impala` from the command line: Maze's commands, resume (the replay buffer is
checkpointed, so SAC resumes bit for bit), and bad input as one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from test_cli import latest_meta_and_theta, only_run_dir
from test_hardening import start, wait_for  # noqa: F401  (the fixture that starts commands we signal)

SAC = ["env=gymnax", "env.name=CartPole-v1", "algorithm=sac", "model=vector_obs", "critic=template_state_action",
       "model.hidden_units=[16]", "algorithm.initial_buffer_size=64", "algorithm.batch_size=32",
       "algorithm.replay_buffer_size=2000", "algorithm.epoch_length=20", "algorithm.rollout_evaluator.n_episodes=2",
       "seeding.agent_base_seed=1", "seeding.env_base_seed=2", "runner.stop_when_solved=false"]


@pytest.mark.cli
def test_sac_trains_resumes_bit_for_bit_and_rolls_out(tmp_path: Path, cache_dir):
    first = run_cli([*SAC, "algorithm.n_epochs=2", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr
    assert "SACEvents             critic_value_loss" in first.stdout and "entropy_coef" in first.stdout
    run_dir = only_run_dir(tmp_path / "a")
    resumed = run_cli([f"input_dir={run_dir}", "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'r'}"],
                      tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    straight = run_cli([*SAC, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert straight.returncode == 0, straight.stderr
    _, theta_r, state_r = latest_meta_and_theta(only_run_dir(tmp_path / "r"))
    _, theta_s, state_s = latest_meta_and_theta(only_run_dir(tmp_path / "s"))
    np.testing.assert_array_equal(theta_r, theta_s)  # the buffer came back with the checkpoint
    np.testing.assert_array_equal(state_r["learner"]["buffer"]["experience"]["obs"],
                                  state_s["learner"]["buffer"]["experience"]["obs"])
    rollout = run_cli([f"input_dir={run_dir}", "runner.n_episodes=2"], tmp_path, cache_dir,
                      module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr


@pytest.mark.cli
def test_sac_trains_a_box_env_with_the_default_model_and_its_rollout_acts_as_it_did(tmp_path: Path, cache_dir):
    """The default model (flatten_concat, `box_distribution: auto`) gives SAC a squashed Gaussian; the saved
    config still says auto, so the rollout and `load_policy` must build the policy the run trained."""
    from maze_jax.models.distributions import SquashedGaussian
    from maze_jax.trained_policy import load_policy

    run = run_cli(["env=gymnax", "env.name=Pendulum-v1", "algorithm=sac", "model.hidden_units=[16]",
                   "algorithm.n_epochs=1", "algorithm.epoch_length=4",
                   "algorithm.initial_buffer_size=64", "algorithm.batch_size=32", "algorithm.replay_buffer_size=1000",
                   "algorithm.rollout_evaluator.n_episodes=1", "runner.final_eval_rollouts=1",
                   f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert run.returncode == 0, run.stderr
    run_dir = only_run_dir(tmp_path / "a")
    assert isinstance(load_policy(str(run_dir)).policy.dist, SquashedGaussian)
    rollout = run_cli([f"input_dir={run_dir}", "runner.n_episodes=1"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr


@pytest.mark.cli
def test_mazes_impala_command_trains_on_a_python_env(tmp_path: Path, cache_dir):
    proc = run_cli(["-cn", "conf_train", "env=gym_env", "env.name=CartPole-v0", "algorithm=impala",
                    "env.backend=gymnasium", "algorithm.n_epochs=1", "algorithm.epoch_length=4",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "ImpalaEvents          importance_weight" in proc.stdout


@pytest.mark.cli
@pytest.mark.parametrize("overrides, message", [
    (["env=gymnax", "env.name=Pendulum-v1", "algorithm=sac", "model.box_distribution=gaussian"],
     "box_distribution=squashed_gaussian"),
    (["algorithm=sac", "algorithm.replay_buffer_size=10", "algorithm.batch_size=100"], "batch_size=100 is above"),
    (["algorithm=sac", "algorithm.replay_buffer_size=100000000000"], "GiB"),
    (["algorithm=ppo", "critic=template_state_action"], "state-action critic"),
    (["algorithm=sac", "critic=shared"], "state-action critics of their own"),
])
def test_bad_off_policy_input_is_one_line_with_exit_2(tmp_path: Path, cache_dir, overrides, message):
    proc = run_cli(["env=cartpole", *overrides, f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.cli
def test_no_evaluator_selects_the_best_model_by_the_training_mean_as_maze_does(tmp_path: Path, cache_dir):
    proc = run_cli(["env=cartpole", "algorithm=impala", "algorithm.n_epochs=2", "algorithm.epoch_length=2",
                    "algorithm.rollout_evaluator.n_episodes=0", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "|eval " not in proc.stdout  # no evaluation per epoch
    train_means = [float(line.rsplit("|", 1)[1].replace(",", "")) for line in proc.stdout.splitlines()
                   if "|train" in line and "reward                mean  " in line]
    best = [float(line.split("model ")[1].rstrip("!")) for line in proc.stdout.splitlines()
            if line.startswith("-> new overall best model")]
    assert best and best[0] == pytest.approx(train_means[0], abs=1e-3)
    assert "Final evaluation of the best model" in proc.stdout


@pytest.mark.cli
def test_a_ppo_run_resumed_with_sac_keeps_its_policy(tmp_path: Path, cache_dir):
    ppo = run_cli(["env=cartpole", "algorithm=ppo", "model=vector_obs", "model.hidden_units=[16]",
                   "algorithm.n_epochs=1", "algorithm.epoch_length=2", f"log_base_dir={tmp_path / 'p'}"],
                  tmp_path, cache_dir)
    assert ppo.returncode == 0, ppo.stderr
    first = only_run_dir(tmp_path / "p")
    sac = run_cli([f"input_dir={first}", "algorithm=sac", "algorithm.n_epochs=1", "algorithm.epoch_length=2",
                   "algorithm.initial_buffer_size=100", "algorithm.replay_buffer_size=1000",
                   f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert sac.returncode == 0, sac.stderr
    assert "Resumed the policy of a ppo run" in sac.stdout and "restart for sac" in sac.stdout


@pytest.mark.signals
def test_sac_survives_sigterm_and_kill_9_and_resumes(tmp_path: Path, cache_dir, start):  # noqa: F811
    import signal

    proc = start([*SAC, "algorithm.n_epochs=0", f"log_base_dir={tmp_path / 'a'}"], tmp_path)
    wait_for(proc, "Iteration 2 ")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "saving the latest checkpoint" in err and "Traceback" not in err
    run_dir = only_run_dir(tmp_path / "a")
    killed = start([f"input_dir={run_dir}", "algorithm.n_epochs=0", "runner.checkpoint_every_s=0",
                    f"log_base_dir={tmp_path / 'b'}"], tmp_path)
    wait_for(killed, "Iteration 5 ")
    killed.kill()
    killed.wait(timeout=30)
    resumed = run_cli([f"input_dir={only_run_dir(tmp_path / 'b')}", "algorithm.n_epochs=8",
                       f"log_base_dir={tmp_path / 'c'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed" in resumed.stdout and "Traceback" not in resumed.stderr
