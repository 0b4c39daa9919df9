"""The host training loop: one jitted epoch per iteration, then table, TensorBoard, model selection, checkpoints."""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import jax
import numpy as np

from maze_jax.algorithms import Trainer
from maze_jax.shell.checkpoints import CheckpointDir
from maze_jax.shell.table import format_table

EVAL_MEAN = "eval_BaseEnvEvents/reward/mean"


@dataclass
class Progress:
    """Host-side counters, saved as checkpoint metadata and restored on resume."""

    epoch: int = 0
    total_step_count: int = 0
    total_episode_count: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1

    def to_meta(self) -> dict:
        meta = asdict(self)
        meta["best_score"] = None if math.isinf(self.best_score) else self.best_score
        return meta

    @classmethod
    def from_meta(cls, meta: dict) -> Progress:
        fields = {k: meta[k] for k in asdict(cls()) if k in meta}
        if fields.get("best_score") is None:
            fields["best_score"] = -math.inf
        return cls(**fields)


@dataclass
class LoopOptions:
    n_epochs: int = 0
    reward_threshold: float | None = None
    progress_interval_s: float = 5.0


def compile_epoch(trainer: Trainer, state, echo: Callable = print):
    """Ahead-of-time compiles `train_epoch` for this state's shapes and reports how long it took."""
    echo("Compiling the training epoch ...", flush=True)
    start = time.perf_counter()
    compiled = jax.jit(trainer.train_epoch).lower(state).compile()
    echo(f"Compiled in {time.perf_counter() - start:.2f} s", flush=True)
    return compiled


def wait_with_progress(result, epoch: int, interval_s: float, echo: Callable = print):
    """Blocks until the asynchronously dispatched epoch is done, printing elapsed time every `interval_s`."""
    leaf = jax.tree.leaves(result)[0]
    start = time.perf_counter()
    next_report = start + interval_s
    while not leaf.is_ready():
        time.sleep(0.01)
        if time.perf_counter() >= next_report:
            echo(f"... epoch {epoch} running for {time.perf_counter() - start:.0f} s", flush=True)
            next_report += interval_s
    return jax.device_get(result)


def epoch_stats(metrics: dict, progress: Progress, seconds: float) -> dict:
    """The epoch's table rows: the algorithm's metrics plus cumulative counts and timing."""
    stats = {k: float(v) for k, v in metrics.items() if not k.endswith("/step_count")}
    reward = "train_BaseEnvEvents/reward/"
    stats[reward + "total_step_count"] = progress.total_step_count
    stats[reward + "total_episode_count"] = progress.total_episode_count
    steps = float(metrics.get(reward + "step_count", 0))
    stats["train_TimeEvents/epoch_time"] = seconds
    stats["train_TimeEvents/steps_per_second"] = steps / max(seconds, 1e-9)
    return dict(sorted(stats.items(), key=lambda kv: not kv[0].startswith("train")))


class TrainingLoop:
    """Runs epochs until `n_epochs`, the reward threshold, or Ctrl-C; keeps latest and best checkpoints."""

    def __init__(self, trainer: Trainer, options: LoopOptions, latest: CheckpointDir, best: CheckpointDir,
                 writer: Any = None, echo: Callable = print):
        self.trainer, self.options, self.latest, self.best = trainer, options, latest, best
        self.writer, self.echo = writer, echo

    def _save(self, store: CheckpointDir, state, progress: Progress) -> None:
        store.save(progress.epoch, state, progress.to_meta())

    def run(self, state, progress: Progress):
        """Trains from `state`; returns the final state, progress, and the best state seen (for final evaluation)."""
        echo, options = self.echo, self.options
        epoch_fn = compile_epoch(self.trainer, state, echo)
        best_state = None
        try:
            while options.n_epochs == 0 or progress.epoch < options.n_epochs:
                start = time.perf_counter()
                new_state, metrics = wait_with_progress(epoch_fn(state), progress.epoch,
                                                        options.progress_interval_s, echo)
                seconds = time.perf_counter() - start
                state = new_state
                progress.epoch += 1
                progress.total_step_count += int(metrics.get("train_BaseEnvEvents/reward/step_count", 0))
                progress.total_episode_count += int(metrics["train_BaseEnvEvents/reward/episode_count"])
                stats = epoch_stats(metrics, progress, seconds)
                echo(format_table(progress.epoch - 1, progress.epoch, stats), flush=True)
                if self.writer is not None:
                    for tag, value in stats.items():
                        self.writer.add_scalar(tag, value, progress.epoch)
                score = stats.get(EVAL_MEAN, math.nan)
                if score > progress.best_score:
                    progress.best_score, progress.best_epoch = score, progress.epoch
                    best_state = state
                    echo(f"-> new overall best model {score:.5f}!", flush=True)
                    self._save(self.best, state, progress)
                self._save(self.latest, state, progress)
                if options.reward_threshold is not None and score >= options.reward_threshold:
                    echo(f"-> evaluation mean {score:.3f} reached the reward threshold "
                         f"{options.reward_threshold:g}: stopping", flush=True)
                    break
        except KeyboardInterrupt:
            echo(f"\nInterrupted: latest checkpoint (epoch {progress.epoch}) is in {self.latest.path}",
                 file=sys.stderr, flush=True)
        return state, progress, best_state
