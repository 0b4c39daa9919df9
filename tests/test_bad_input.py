"""Bad input ends in one line, the right exit status and no run directory left behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli

pytestmark = pytest.mark.cli


def test_invalid_yaml_in_a_config_folder_is_one_line(tmp_path, cache_dir):
    (tmp_path / "conf" / "env").mkdir(parents=True)
    (tmp_path / "conf" / "env" / "bad.yaml").write_text("_target_: maze_jax.envs.make_env\nname: [CartPole-v1\n")
    proc = run_cli(["--config-dir", "conf", "env=bad", "runner=dev", f"log_base_dir={tmp_path}/outputs"], tmp_path,
                   cache_dir)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: invalid YAML in {tmp_path / 'conf' / 'env' / 'bad.yaml'}, "
                                                   "line 3"), lines
    assert not (tmp_path / "outputs").exists()


def test_an_own_env_whose_constructor_refuses_its_arguments_is_one_line(tmp_path, cache_dir):
    (tmp_path / "conf" / "env").mkdir(parents=True)
    (tmp_path / "my_envs.py").write_text("import gymnasium\n\n\nclass Plant(gymnasium.Env):\n"
                                         "    def __init__(self, length=3):\n        self.length = float(length)\n")
    (tmp_path / "conf" / "env" / "plant.yaml").write_text("_target_: my_envs.Plant\nlength: abc\n")
    proc = run_cli(["--config-dir", "conf", "env=plant", "runner=dev", f"log_base_dir={tmp_path}/outputs"],
                   tmp_path, cache_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Error: env._target_=my_envs.Plant could not be built (length='abc'): ValueError: could not convert "
        "string to float: 'abc'"]
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_a_run_directory_of_empty_files_is_one_line_and_nothing_is_left_behind(tmp_path, cache_dir):
    run = tmp_path / "run"
    for name in ("hydra_config.yaml", ".hydra/hydra.yaml", ".hydra/config.yaml", "train.log", "checkpoints/x"):
        (run / name).parent.mkdir(parents=True, exist_ok=True)
        (run / name).write_text("")
    for module in ("maze_jax.train", "maze_jax.rollout"):
        proc = run_cli([f"input_dir={run}", f"log_base_dir={tmp_path}/outputs"], tmp_path, cache_dir, module=module)
        assert proc.returncode == 2, (module, proc.stderr[-2000:])
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].endswith(f"{run}/hydra_config.yaml is empty (not a maze_jax run "
                                                     "directory, or its files were emptied)"), (module, lines)
        assert not (tmp_path / "outputs").exists(), (module, list((tmp_path / "outputs").rglob("*")))


def test_rollout_settings_that_cannot_apply_are_refused_not_ignored(tmp_path, cache_dir):
    proc = run_cli(["env=cartpole", "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=1",
                    f"hydra.run.dir={tmp_path}/run"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for setting, message in (("runner.batch_size=0", "Error: runner.batch_size=0: must be >= 1"),
                             ("policy.seed=3", "Error: seed=3: the run trained one seed (runner.n_seeds=1), seed 0"),
                             ("+runner.n_episode=3", "Error: runner.n_episode is not a setting of runner. Did you "
                                                     "mean runner.n_episodes?"),
                             ("+policy.checkpoints=best", "Error: policy config does not fit maze_jax.trained_policy."
                                                          "trained_policy: got an unexpected keyword argument "
                                                          "'checkpoints'")):
        proc = run_cli([f"input_dir={tmp_path}/run", setting, f"log_base_dir={tmp_path}/outputs"], tmp_path,
                       cache_dir, module="maze_jax.rollout")
        assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [message], proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


def test_rendering_an_env_that_cannot_draw_is_one_line(tmp_path, cache_dir):
    countdown = "env.name=python_envs:MazeJaxTest/Countdown-v0"
    tests = Path(__file__).resolve().parent  # where python_envs lies
    proc = run_cli(["env=gymnasium", countdown, "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1",
                    "algorithm.epoch_length=1", f"hydra.run.dir={tmp_path}/run"], tests, cache_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = run_cli([f"input_dir={tmp_path}/run", countdown, "runner.render=true", "runner.n_episodes=1",
                    f"log_base_dir={tmp_path}/outputs"], tests, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "Error: runner.render: env MazeJaxTest/Countdown-v0 cannot draw itself: its metadata's render_modes [] lack "
        "rgb_array (a gymnasium env draws frames with render_mode='rgb_array')"], proc.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("key, folder", [("hydra.run.dir", "existing"), ("hydra.run.dir", "new"),
                                         ("log_base_dir", "existing"), ("hydra.sweep.dir", "existing")])
def test_a_read_only_output_folder_is_one_line(key, folder, read_only_disk, tmp_path, cache_dir):
    given = read_only_disk / folder
    multirun = ["--multirun", "algorithm.lr=0.1,0.2"] if key == "hydra.sweep.dir" else []
    proc = run_cli([*multirun, "runner=dev", f"{key}={given}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    where = given if folder == "existing" else read_only_disk
    assert proc.stderr == (f"Error: {key}='{given}' cannot be created or written ({where} is not a writable "
                           "directory)\n")


def test_a_bad_override_prints_its_line_and_nothing_else(tmp_path, cache_dir):
    # JAX's INFO lines (a backend it could not start, while the run directory's name was resolved) used to come first
    proc = run_cli(["algorithm=ppo", "algorithm.lr=abc", f"log_base_dir={tmp_path}/outputs"], tmp_path, cache_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["Error: algorithm.lr='abc': expected a number"]
    assert proc.stdout.strip() == "", proc.stdout[-2000:]
