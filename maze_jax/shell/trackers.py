"""Experiment trackers besides TensorBoard (`+logger=mlflow`): writers with TensorBoard's `add_scalar`,
`add_text`, `flush` and `close`, so that every tag TensorBoard gets reaches them too."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, Callable

from maze_jax.config import ConfigError, first_line
from maze_jax.shell.network import unreachable


# A tracking server that does not answer: MLflow's own defaults retry 7 times with backoff (over 4 minutes) and wait
# 120 s a request; a run waits for its tracker at most this long (`MLFLOW_HTTP_REQUEST_*` set by the user win)
MLFLOW_HTTP = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}
MLFLOW_CONNECT_S = 10.0  # how long a run waits for a tracking server's port to answer before it starts


class MLflowWriter:
    """One MLflow run per training run, offline by default: a SQLite store `<log_base_dir>/mlflow.db` that every run
    of the folder shares (`mlflow ui --backend-store-uri sqlite:///outputs/mlflow.db` shows them), artifacts in the
    run directory. Scalars are metrics by tag and step; the config is the run's parameters and an artifact.

    A store that cannot be used (a corrupt database, a server that does not answer within `MLFLOW_CONNECT_S`) stops
    the run before it trains, in one line (ConfigError). Once training, a tracker that fails says so in one line and
    records no more: training goes on, and TensorBoard has every record."""

    def __init__(self, run_dir: str, config: dict, tracking_uri: str | None = None,
                 experiment_name: str = "maze_jax", echo: Callable = print):
        try:
            import mlflow
        except ImportError:
            raise ConfigError('+logger=mlflow needs MLflow: pip install "maze-jax[mlflow]"') from None
        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines about database tables
        logging.getLogger("alembic").setLevel(logging.WARNING)
        for key, value in MLFLOW_HTTP.items():
            os.environ.setdefault(key, value)
        base = os.path.dirname(os.path.abspath(run_dir))
        uri = tracking_uri or f"sqlite:///{os.path.join(os.path.dirname(base), 'mlflow.db')}"
        self.echo, self.failed = echo, False
        if uri.startswith(("http://", "https://")) and (why := unreachable(server_address(uri), MLFLOW_CONNECT_S)):
            raise ConfigError(f"logger.tracking_uri={uri}: the tracking server does not answer ({why})")
        try:
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
        except Exception as error:  # SQLAlchemy's, requests' and MLflow's own errors
            raise ConfigError(f"+logger=mlflow: the tracking store {uri} cannot be used: {tracker_error(error)}"
                              ) from None
        self._metrics: list = []

    def _recording(self, call: Callable, *args) -> None:
        """`call(*args)` unless the tracker failed before; a first failure is said in one line."""
        if self.failed:
            return
        try:
            call(*args)
        except Exception as error:
            self.failed = True
            self.echo(f"Warning: MLflow stopped recording ({tracker_error(error)}); training goes on, TensorBoard has "
                      "every record", file=sys.stderr, flush=True)

    def add_scalar(self, tag: str, value: float, step: int, walltime: float | None = None) -> None:
        import mlflow

        timestamp = int(walltime * 1000) if walltime else 0
        self._metrics.append(mlflow.entities.Metric(tag, float(value), timestamp, int(step)))

    def add_text(self, tag: str, text: str) -> None:
        self._recording(self.client.log_text, self.run_id, text, f"{tag}.txt")

    def flush(self) -> None:
        metrics, self._metrics = self._metrics, []
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a call
            self._recording(lambda batch: self.client.log_batch(self.run_id, metrics=batch),
                            metrics[start:start + 1000])

    def close(self) -> None:
        self.flush()
        self._recording(self.client.set_terminated, self.run_id)


def server_address(uri: str) -> str:
    """'host:port' of an http(s) tracking URI (the scheme's port when it names none)."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    return f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"


def tracker_error(error: BaseException) -> str:
    """An MLflow failure in a few words: the innermost cause's type and first line."""
    while error.__cause__ is not None:
        error = error.__cause__
    return f"{type(error).__name__}: {first_line(error, 200)}"


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


def make_writers(run_dir: str, logger: dict | None, config: dict, echo: Callable = print):
    """The run's writers: the `logger` group's tracker (`+logger=mlflow`; first: a tracker that cannot be used
    stops the run before TensorBoard writes a file), then TensorBoard's."""
    from tensorboardX import SummaryWriter

    writers: list = []
    if logger:  # checked at the border (settings.read_logger)
        writers.append(MLflowWriter(run_dir, config, logger.get("tracking_uri"),
                                    str(logger.get("experiment_name") or "maze_jax"), echo))
    return Writers([SummaryWriter(run_dir), *writers])
