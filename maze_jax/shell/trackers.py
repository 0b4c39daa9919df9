"""Experiment trackers besides TensorBoard (`+logger=mlflow`): writers with TensorBoard's `add_scalar`,
`add_text`, `flush` and `close`, so that every tag TensorBoard gets reaches them too."""

from __future__ import annotations

import logging
import os
from typing import Any

from maze_jax.config import ConfigError


class MLflowWriter:
    """One MLflow run per training run, offline by default: a SQLite store `<log_base_dir>/mlflow.db` that every run
    of the folder shares (`mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` shows them), artifacts in the
    run directory. Scalars are metrics by tag and step; the config is the run's parameters and an artifact."""

    def __init__(self, run_dir: str, config: dict, tracking_uri: str | None = None,
                 experiment_name: str = "maze_jax"):
        try:
            import mlflow
        except ImportError:
            raise ConfigError('+logger=mlflow needs MLflow: pip install "maze-jax[mlflow]"') from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines about database tables
        logging.getLogger("alembic").setLevel(logging.WARNING)
        base = os.path.dirname(os.path.abspath(run_dir))
        uri = tracking_uri or f"sqlite:///{os.path.join(os.path.dirname(base), 'mlflow.db')}"
        self.client = mlflow.tracking.MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            experiment_name, artifact_location=os.path.join(os.path.dirname(base), "mlflow_artifacts"))
        name = f"{os.path.basename(base)}/{os.path.basename(run_dir)}"
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        params = flatten(config)
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters a call
            batch = list(params.items())[start:start + 100]
            self.client.log_batch(self.run_id, params=[mlflow.entities.Param(k, str(v)[:6000]) for k, v in batch])
        self.client.set_tag(self.run_id, "run_dir", os.path.abspath(run_dir))
        self._metrics: list = []

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        import mlflow

        self._metrics.append(mlflow.entities.Metric(tag, float(value), 0, int(step)))

    def add_text(self, tag: str, text: str) -> None:
        self.client.log_text(self.run_id, text, f"{tag}.txt")

    def flush(self) -> None:
        metrics, self._metrics = self._metrics, []
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self.client.log_batch(self.run_id, metrics=metrics[start:start + 1000])

    def close(self) -> None:
        self.flush()
        self.client.set_terminated(self.run_id)


def flatten(config: Any, prefix: str = "") -> dict:
    """`{"algorithm": {"lr": 1e-3}}` -> `{"algorithm.lr": 1e-3}`."""
    if not isinstance(config, dict):
        return {prefix: config}
    flat = {}
    for key, value in config.items():
        flat.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class Writers:
    """TensorBoard's writer and the trackers as one: each call goes to all of them."""

    def __init__(self, writers: list):
        self.writers = writers

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: [getattr(w, name)(*args, **kwargs) for w in self.writers]


def make_writers(run_dir: str, logger: dict | None, config: dict):
    """The run's writers: TensorBoard's, plus the `logger` group's tracker (`+logger=mlflow`)."""
    from tensorboardX import SummaryWriter

    writers: list = [SummaryWriter(run_dir)]
    if logger:  # checked at the border (settings.read_logger)
        writers.append(MLflowWriter(run_dir, config, logger.get("tracking_uri"),
                                    str(logger.get("experiment_name") or "maze_jax")))
    return Writers(writers)
