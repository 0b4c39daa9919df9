"""Every script in examples/ runs as a user would run it and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.cli

EXPECTED = {
    "train_from_python.py": "action for",
    "vmap_seeds.py": "mean training return per seed and epoch",
    "ppo_learning_rates.py": "lr 3e-03: mean training return",
    "own_loop.py": "epoch 2: train return",
    "greedy_loops.py": "gymnasium CartPole-v1 after",
}


def test_every_example_is_listed():
    assert sorted(p.name for p in (REPO / "examples").glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_example_runs(script, tmp_path, cache_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_COMPILATION_CACHE_DIR": cache_dir}
    proc = subprocess.run([sys.executable, str(REPO / "examples" / script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert EXPECTED[script] in proc.stdout


def test_custom_project_trains_resumes_and_rolls_out_from_its_own_folder(tmp_path, cache_dir):
    """examples/custom_project, copied elsewhere: its own env and model by `_target_`, its configs by --config-dir."""
    import re
    import shutil

    from conftest import run_cli

    project = tmp_path / "custom_project"
    shutil.copytree(REPO / "examples" / "custom_project", project)
    common = ["--config-dir", "conf", f"log_base_dir={tmp_path}/outputs"]
    proc = run_cli([*common, "env=match_target", "model=target_net", "algorithm=ppo", "runner=dev",
                    "seeding.agent_base_seed=0", "seeding.env_base_seed=0", "algorithm.n_epochs=3"], project, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = float(re.search(r"final\s+BaseEnvEvents\s+reward\s+mean\s+\|\s+(\S+)", proc.stdout).group(1))
    assert final > 4 * 1.5, final  # 20 steps, 5 choices: a random policy gets 4
    run_dir = next((tmp_path / "outputs").glob("MatchTarget-target_net-ppo-dev/*"))  # named after the env's name
    # the run directory names the project's code: a resume and a rollout name conf/ again, whose configs name it
    proc = run_cli([*common, f"input_dir={run_dir}", "algorithm.n_epochs=4"], project, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Resumed" in proc.stdout and "at epoch 3" in proc.stdout
    proc = run_cli([f"input_dir={run_dir}", "runner.n_episodes=5", f"log_base_dir={tmp_path}/rollout"], project,
                   cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 2 and "names code that this command does not: env._target_='my_project.env.make_env'" \
        in proc.stderr, proc.stderr[-3000:]
    proc = run_cli(["--config-dir", "conf", f"input_dir={run_dir}", "runner.n_episodes=5",
                    f"log_base_dir={tmp_path}/rollout"], project, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Rolling out 5 episodes of MatchTarget" in proc.stdout
