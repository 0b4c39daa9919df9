"""`maze-run`, the package's console script, as Maze users type it: `-cn conf_train` trains, the default rolls out,
and `--help` explains the config groups, the main keys and the exit statuses."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

TINY = ["env=gym_env", "env.name=CartPole-v1", "runner=dev", "algorithm.n_rollouts_per_update=8",
        "model.hidden_units=[16]", "algorithm.n_epochs=1", "runner.n_eval_rollouts=4", "runner.final_eval_rollouts=4"]


def maze_run(args: list[str], cwd, cache_dir: str | None = None, timeout: float = 300):
    """Runs the installed `maze-run ARGS` console script in a subprocess."""
    script = Path(sysconfig.get_path("scripts")) / "maze-run"
    assert script.exists(), f"{script} is missing: install the package (pip install -e .)"
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    extra = [f"compilation_cache_dir={cache_dir}"] if cache_dir else []
    return subprocess.run([str(script), *args, *extra], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache_dir) -> tuple[Path, subprocess.CompletedProcess]:
    base = tmp_path_factory.mktemp("maze_run")
    proc = maze_run(["-cn", "conf_train", *TINY, f"log_base_dir={base}"], base, cache_dir)
    return base, proc


def test_maze_run_cn_conf_train_trains(trained):
    base, proc = trained
    assert proc.returncode == 0, proc.stderr
    assert "BaseEnvEvents" in proc.stdout and "reward" in proc.stdout
    run_dirs = [p for p in base.glob("*/*") if (p / "hydra_config.yaml").exists()]
    assert len(run_dirs) == 1 and (run_dirs[0] / "best").is_dir()


@pytest.mark.cli
def test_maze_run_without_a_config_name_rolls_out(trained, tmp_path, cache_dir):
    base, _ = trained
    run_dir = next(p for p in base.glob("*/*") if (p / "hydra_config.yaml").exists())
    proc = maze_run([f"input_dir={run_dir}", "runner.n_episodes=3", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "rollout" in proc.stdout and "episode_count" in proc.stdout
    assert len(list((tmp_path / "rollout").glob("*/episodes.csv"))) == 1


@pytest.mark.cli
def test_maze_run_rolls_out_with_mazes_model_and_critic_names(trained, tmp_path, cache_dir):
    """Maze's form names the policy, model and critic: accepted where they are the run's, one line where not."""
    base, _ = trained
    run_dir = next(p for p in base.glob("*/*") if (p / "hydra_config.yaml").exists())
    maze = [f"input_dir={run_dir}", "policy=torch_policy", "runner.n_episodes=2", f"log_base_dir={tmp_path}"]
    proc = maze_run([*maze, "model=flatten_concat", "model.hidden_units=[16]", "critic=template_state"], tmp_path,
                    cache_dir)
    assert proc.returncode == 0, proc.stderr
    refused = maze_run([*maze, "model=vector_obs", "critic=template_state"], tmp_path, cache_dir)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert "model.hidden_units was [16], is [128, 128]" in refused.stderr
    assert len(list((tmp_path / "rollout").glob("*/episodes.csv"))) == 1  # the refused command left nothing


@pytest.mark.cli
def test_maze_run_without_input_dir_rolls_out_a_random_policy_as_maze_does(tmp_path, cache_dir):
    proc = maze_run(["env=gym_env", "env.name=CartPole-v1", "runner.n_episodes=3", f"log_base_dir={tmp_path}"],
                    tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Rolling out 3 episodes of CartPole-v1" in proc.stdout and "(policy random_policy" in proc.stdout
    assert len(list((tmp_path / "rollout").glob("*/episodes.csv"))) == 1


@pytest.mark.parametrize("command", [["maze-run"], ["maze-run", "-cn", "conf_train"], ["python"]])
def test_help_lists_groups_options_keys_and_exit_statuses(command, tmp_path):
    if command[0] == "python":
        proc = subprocess.run([sys.executable, "-m", "maze_jax.train", "--help"], cwd=tmp_path, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    else:
        proc = maze_run([*command[1:], "--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "Exit statuses" in text and "input_dir=" in text
    assert all(len(line) <= 120 for line in text.splitlines())  # summaries wrap, whole: none is cut off
    assert "Craftax-Classic-Pixels-v1" in text  # the second line of craftax.yaml's summary
    if command == ["maze-run"]:  # rollouts: policies, no algorithms; and how to train
        assert "policy=" in text and "random_policy" in text and "algorithm=" not in text
        assert "maze-run -cn conf_train" in text
        return
    for group, option in (("env=", "gym_env"), ("model=", "flatten_concat"), ("algorithm=", "ppo"),
                          ("runner=", "local"), ("+experiment=", "lunarlander_ppo"), ("+logger=", "mlflow")):
        assert group in text and option in text
    assert "policy=" not in text  # rollout-only groups are left out of training's help
    # every option has a line on what it is for
    options = [line for line in text.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert all(len(line.split(None, 1)) == 2 for line in options), options
    assert not list(tmp_path.iterdir()), "help must not create a run directory"


def test_an_unknown_config_name_is_one_line(tmp_path):
    proc = maze_run(["-cn", "conf_tarin", "env=cartpole"], tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "conf_train" in proc.stderr


def test_version_names_maze_jax_and_its_libraries(tmp_path):
    from importlib.metadata import version

    import maze_jax

    for command in (["-cn", "conf_train", "--version"], ["--version"]):
        proc = maze_run(command, tmp_path)
        assert proc.returncode == 0 and proc.stdout == (
            f"maze_jax {maze_jax.__version__} (jax {version('jax')}, flax {version('flax')}, "
            f"hydra-core {version('hydra-core')})\n"), proc.stdout  # not Hydra's own "Hydra 1.3.8"
    assert not list(tmp_path.iterdir())
