"""+logger=mlflow: an experiment tracker besides TensorBoard, offline, with the same tags and the config."""

from __future__ import annotations

import importlib.util

import pytest

from conftest import run_cli
from maze_jax.config import ConfigError
from maze_jax.shell.settings import read_logger

HAS_MLFLOW = importlib.util.find_spec("mlflow") is not None


@pytest.mark.extra
@pytest.mark.skipif(not HAS_MLFLOW, reason="MLflow is an optional extra: pip install '.[mlflow]'")
def test_mlflow_gets_every_tag_tensorboard_gets_and_the_config(tmp_path, cache_dir):
    from mlflow.tracking import MlflowClient

    proc = run_cli(["env=cartpole", "runner=dev", "algorithm.n_epochs=2", "runner.stop_when_solved=false",
                    "+logger=mlflow", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "INFO" not in proc.stdout + proc.stderr  # MLflow's database notices stay quiet
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("maze_jax").experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.data.params["algorithm.n_epochs"] == "2" and run.data.params["env.name"] == "CartPole-v1"
    history = client.get_metric_history(run.info.run_id, "eval_BaseEnvEvents/reward/mean")
    assert [m.step for m in history] == [1, 2]
    for tag in ("train_ESEvents/policy_grad_norm", "train_TimeEvents/steps_per_second", "final_BaseEnvEvents/reward/mean"):
        assert tag in run.data.metrics, tag
    assert run.data.tags["run_dir"].startswith(str(tmp_path))


def test_the_logger_group_is_checked_before_anything_is_built(monkeypatch):
    assert read_logger(None) is None
    with pytest.raises(ConfigError, match="logger.kind='wandb' is unknown. Valid: mlflow"):
        read_logger({"kind": "wandb"})
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(ConfigError, match=r'pip install "maze-jax\[mlflow\]"'):
        read_logger({"kind": "mlflow"})
