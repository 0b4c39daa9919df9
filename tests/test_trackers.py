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


@pytest.mark.extra
@pytest.mark.skipif(not HAS_MLFLOW, reason="MLflow is an optional extra: pip install '.[mlflow]'")
@pytest.mark.parametrize("store", ["corrupt", "refused", "unknown host"])
def test_a_tracking_store_that_cannot_be_used_is_one_line_in_bounded_time(store, tmp_path, cache_dir):
    import time

    from test_devices import free_port

    out = tmp_path / "out"
    args = {"corrupt": [], "refused": [f"logger.tracking_uri=http://127.0.0.1:{free_port()}"],
            "unknown host": ["logger.tracking_uri=http://tracker.invalid:5000"]}[store]
    if store == "corrupt":
        out.mkdir()
        (out / "mlflow.db").write_text("not a database")
    started = time.time()
    proc = run_cli(["env=cartpole", "runner=dev", "+logger=mlflow", *args, f"log_base_dir={out}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and time.time() - started < 60, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1, proc.stderr[-3000:]
    expected = {"corrupt": "cannot be used: DatabaseError: file is not a database",
                "refused": "the tracking server does not answer (nothing answered there within 10 s",
                "unknown host": "the tracking server does not answer (the host 'tracker.invalid' is unknown)"}[store]
    assert expected in proc.stderr
    assert not [p for p in out.glob("*") if p.name != "mlflow.db"]  # no run directory left behind


def test_a_tracker_that_fails_while_training_says_so_once_and_training_goes_on():
    from maze_jax.shell.trackers import MLflowWriter

    said = []
    writer = MLflowWriter.__new__(MLflowWriter)  # as built, with a client whose server went away
    writer.echo, writer.failed, writer.run_id, writer._metrics = (lambda *a, **k: said.append(a[0])), False, "r", []

    class Gone:
        def log_batch(self, *args, **kwargs):
            raise ConnectionError("Max retries exceeded")

        log_text = set_terminated = log_batch

    writer.client = Gone()
    writer.add_text("config", "x")
    writer.flush()
    writer.close()
    assert said == ["Warning: MLflow stopped recording (ConnectionError: Max retries exceeded); training goes on, "
                    "TensorBoard has every record"]
