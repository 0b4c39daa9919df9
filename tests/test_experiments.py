"""The tuned experiments behind scripts/bench_learning.py compose into valid settings at the budgets it reports."""

from __future__ import annotations

import sys

import pytest

from conftest import REPO
from maze_jax.shell.settings import compose_config, read_settings

sys.path.insert(0, str(REPO / "scripts"))
import bench_learning  # noqa: E402


@pytest.mark.parametrize("benchmark", bench_learning.BENCHMARKS, ids=lambda b: b.name)
def test_each_benchmark_is_its_experiment_at_the_published_budget(benchmark):
    cfg, _ = compose_config(benchmark.overrides)
    algorithm = read_settings(cfg).algorithm
    per_epoch = algorithm.n_envs * algorithm.n_rollout_steps * algorithm.epoch_length
    assert per_epoch == benchmark.steps_per_epoch
    assert abs(algorithm.n_epochs * per_epoch - benchmark.budget) < per_epoch  # the experiment's own budget
    assert cfg.env.get("name") == benchmark.overrides[-1].split("=")[-1] or benchmark.name == "ant"


def test_minatar_ppo_has_the_gymnax_baseline_settings():
    cfg, _ = compose_config(["+experiment=minatar_ppo"])
    a = read_settings(cfg).algorithm
    assert (a.n_envs, a.n_rollout_steps, a.n_minibatches, a.n_optimization_epochs) == (64, 128, 8, 4)
    assert (a.lr, a.gamma, a.gae_lambda, a.entropy_coef, a.max_grad_norm) == (0.0005, 0.999, 0.95, 0.01, 0.5)
    assert list(cfg.model.hidden_units) == [256, 256] and cfg.model.non_lin == "ReLU"
