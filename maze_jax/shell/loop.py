"""The host training loop: one jitted epoch per iteration, then table, TensorBoard, model selection, checkpoints."""

from __future__ import annotations

import functools
import math
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple

import jax

from maze_jax.algorithms import Trainer
from maze_jax.envs import EpisodeStats
from maze_jax.shell.checkpoints import CheckpointDir
from maze_jax.shell.table import format_table
from maze_jax.stats import episode_statistics

EVAL_MEAN = "eval_BaseEnvEvents/reward/mean"


@dataclass
class Progress:
    """Host-side counters, saved as checkpoint metadata and restored on resume."""

    epoch: int = 0
    total_step_count: int = 0
    total_episode_count: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    algorithm: str = ""

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
    checkpoint_every_s: float = 10.0
    dump_interval: int = 0
    patience: int = 0
    progress_interval_s: float = 5.0


class Programs(NamedTuple):
    """The compiled programs of a run: init(key), train_epoch(state), evaluate(state, key) -> EpisodeStats."""

    init: Callable
    train_epoch: Callable
    evaluate: Callable


def compile_programs(trainer: Trainer, key: jax.Array, echo: Callable = print) -> Programs:
    """Compiles init, epoch and evaluation ahead of time, so the time users wait for compilation is reported."""
    echo("Compiling init, training epoch and evaluation ...", flush=True)
    start = time.perf_counter()
    state = jax.eval_shape(trainer.init, key)
    jobs = [(trainer.init, (key,)), (trainer.train_epoch, (state,)), (trainer.evaluate, (state, key))]
    programs = Programs(*(jax.jit(f).lower(*args).compile() for f, args in jobs))
    echo(f"Compiled in {time.perf_counter() - start:.2f} s", flush=True)
    return programs


_statistics = jax.jit(episode_statistics, static_argnums=1)


def evaluation_stats(programs: Programs, state, key: jax.Array, repeats: int = 1, prefix: str = "eval") -> dict:
    """Statistics of `repeats` batches of evaluation episodes of `state`'s policy."""
    merged = functools.reduce(EpisodeStats.merge, [programs.evaluate(state, jax.random.fold_in(key, i))
                                                   for i in range(repeats)])
    return {k: float(v) for k, v in jax.device_get(_statistics(merged, prefix)).items()}


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

    def __init__(self, programs: Programs, options: LoopOptions, latest: CheckpointDir, best: CheckpointDir,
                 eval_key: jax.Array, writer: Any = None, echo: Callable = print):
        self.programs, self.options, self.latest, self.best = programs, options, latest, best
        self.eval_key = eval_key
        self.writer, self.echo = writer, echo

    def _flush(self, state, progress: Progress, best_state, best_unsaved: bool) -> None:
        """Writes the latest state, and the best one if it changed since the last flush."""
        if best_unsaved:
            meta = {**progress.to_meta(), "epoch": progress.best_epoch}
            self.best.save(progress.best_epoch, best_state, meta)
        self.latest.save(progress.epoch, state, progress.to_meta())
        self._last_flush = time.perf_counter()

    def run(self, state, progress: Progress):
        """Trains from `state`; returns the final state, progress, and the best state seen (for final evaluation).

        Checkpoints (latest, and best when it improved) are written every `checkpoint_every_s` seconds,
        every `dump_interval` epochs, and when the loop ends for any reason.
        """
        echo, options = self.echo, self.options
        best_state, best_unsaved = None, False
        self._last_flush = time.perf_counter()
        try:
            while options.n_epochs == 0 or progress.epoch < options.n_epochs:
                start = time.perf_counter()
                new_state, metrics = wait_with_progress(self.programs.train_epoch(state), progress.epoch,
                                                        options.progress_interval_s, echo)
                seconds = time.perf_counter() - start
                state = new_state
                metrics.update(evaluation_stats(self.programs, state, jax.random.fold_in(self.eval_key, progress.epoch)))
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
                    best_state, best_unsaved = state, True
                    echo(f"-> new overall best model {score:.5f}!", flush=True)
                dump = options.dump_interval and progress.epoch % options.dump_interval == 0
                if dump or time.perf_counter() - self._last_flush >= options.checkpoint_every_s:
                    self._flush(state, progress, best_state, best_unsaved)
                    best_unsaved = False
                if options.patience and progress.epoch - max(progress.best_epoch, 0) >= options.patience:
                    echo(f"-> no improvement since {options.patience} epochs: EARLY STOPPING!", flush=True)
                    break
                if options.reward_threshold is not None and score >= options.reward_threshold:
                    echo(f"-> evaluation mean {score:.3f} reached the reward threshold "
                         f"{options.reward_threshold:g}: stopping", flush=True)
                    break
        except KeyboardInterrupt:
            echo(f"\nInterrupted: saving the latest checkpoint (epoch {progress.epoch}) to {self.latest.path}",
                 file=sys.stderr, flush=True)
        self._flush(state, progress, best_state, best_unsaved)
        return state, progress, best_state
