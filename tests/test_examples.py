"""Every script in examples/ runs as a user would run it and prints what it promises."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from conftest import REPO

EXPECTED = {
    "train_from_python.py": "action for",
    "vmap_seeds.py": "mean training return per seed and epoch",
    "ppo_learning_rates.py": "lr 3e-03: mean training return",
    "own_loop.py": "epoch 2: train return",
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
