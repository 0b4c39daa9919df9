"""The host training loop: one jitted epoch per iteration, then table, TensorBoard, model selection, checkpoints."""

from __future__ import annotations

import math
import signal
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from typing import Any, Callable, NamedTuple

import jax
import numpy as np

from maze_jax.algorithms import Trainer
from maze_jax.shell.checkpoints import CheckpointDir, from_savable, to_savable
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
    algorithm: str = ""
    seed_best_scores: list | None = None  # per seed, when several seeds train together
    normalization: dict | None = None  # observation-normalisation statistics ({key: {name: nested list}})

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
    n_seeds: int = 1
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
    init = jax.jit(trainer.init).lower(key).compile()
    # the state as init places it (replicated over the devices of a mesh), so the epoch expects it that way
    state = jax.tree.map(lambda s, sharding: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding),
                         jax.eval_shape(trainer.init, key), init.output_shardings)
    programs = Programs(init, *(jax.jit(f).lower(*args).compile()
                                for f, args in [(trainer.train_epoch, (state,)), (trainer.evaluate, (state, key))]))
    echo(f"Compiled in {time.perf_counter() - start:.2f} s", flush=True)
    return programs


def evaluation_stats(programs: Programs, state, key: jax.Array, prefix: str = "eval", per_seed: bool = False) -> dict:
    """Statistics of one batch of evaluation episodes of `state`'s policy (arrays over seeds if per_seed)."""
    episodes = jax.device_get(programs.evaluate(state, key))
    return episode_table(episodes.first_return, episodes.first_length, prefix, per_seed, ended=episodes.count > 0)


def play_in_batches(evaluate: Callable, state, key: jax.Array, n_episodes: int):
    """Returns and lengths (numpy; episodes on the last axis, seeds before it) of `n_episodes` episodes, played
    one batch per call of `evaluate(state, key) -> EpisodeStats`, with keys `fold_in(key, i)`.

    The final evaluation of a run and `python -m maze_jax.rollout` both play episodes this way, so a rollout
    with the run's seed and batch size reproduces the final evaluation exactly."""
    batches, played = [], 0
    while played < n_episodes:
        batches.append(jax.device_get(evaluate(state, jax.random.fold_in(key, len(batches)))))
        played += batches[-1].first_return.shape[-1]
    returns = np.concatenate([b.first_return for b in batches], axis=-1)[..., :n_episodes]
    lengths = np.concatenate([b.first_length for b in batches], axis=-1)[..., :n_episodes]
    return returns, lengths


def episode_table(returns, lengths, prefix: str, per_seed: bool = False, ended=None) -> dict:
    """Reward statistics (Maze's tags under `prefix`) of per-episode returns and lengths, episodes on the last axis
    (seeds before it: one value per seed with `per_seed`, else all pooled). `ended` marks the episodes that count.
    Computed with numpy on the host: nothing to compile, so a run starts sooner."""
    returns, lengths = np.asarray(returns, np.float64), np.asarray(lengths, np.float64)
    if ended is not None:
        returns, lengths = np.where(ended, returns, np.nan), np.where(ended, lengths, np.nan)
    if not per_seed:
        returns, lengths = returns.reshape(-1), lengths.reshape(-1)
    tag = f"{prefix}_BaseEnvEvents/reward/"
    with warnings.catch_warnings():  # no episode ended: NaN statistics, as in training
        warnings.simplefilter("ignore", RuntimeWarning)
        return {tag + "mean": np.nanmean(returns, -1), tag + "std": np.nanstd(returns, -1),
                tag + "min": np.nanmin(returns, -1), tag + "max": np.nanmax(returns, -1),
                tag + "mean_step_count": np.nanmean(lengths, -1), tag + "median_step_count": np.nanmedian(lengths, -1),
                tag + "episode_count": (~np.isnan(returns)).sum(-1)}


def across_seeds(values: dict) -> dict:
    """Table rows from per-seed values: the mean over seeds, plus the spread of the evaluation mean."""
    rows = {k: float(np.mean(v)) for k, v in values.items()}
    for tag, v in values.items():
        if np.ndim(v) and tag.endswith("BaseEnvEvents/reward/mean") and not tag.startswith("train"):
            rows[tag + "_seed_min"], rows[tag + "_seed_max"] = float(np.min(v)), float(np.max(v))
    return rows


def select_seeds(improved: np.ndarray, new, old):
    """`new` where `improved` (per seed, or one flag), else `old`: each seed keeps its own best state."""
    if old is None:
        return new
    pick = lambda a, b: np.where(np.reshape(improved, np.shape(improved) + (1,) * (np.ndim(a) - np.ndim(improved))),
                                 a, b)
    return from_savable(new, jax.tree.map(pick, to_savable(new), to_savable(old)))


def wait_with_progress(result, epoch: int, interval_s: float, echo: Callable = print,
                       should_stop: Callable = lambda: False):
    """Blocks until the asynchronously dispatched epoch is done, printing elapsed time every `interval_s`.

    Returns `result` (still on the devices), or None (the epoch abandoned) as soon as `should_stop()` is true."""
    leaf = jax.tree.leaves(result)[0]
    start = time.perf_counter()
    next_report = start + interval_s
    while not leaf.is_ready():
        if should_stop():
            return None
        time.sleep(0.01)
        if time.perf_counter() >= next_report:
            echo(f"... epoch {epoch} running for {time.perf_counter() - start:.0f} s", flush=True)
            next_report += interval_s
    return result


def epoch_stats(metrics: dict, progress: Progress, seconds: float) -> dict:
    """The epoch's table rows: the algorithm's metrics (mean over seeds) plus cumulative counts and timing."""
    stats = across_seeds({k: v for k, v in metrics.items() if not k.endswith("/step_count")})
    reward = "train_BaseEnvEvents/reward/"
    stats[reward + "total_step_count"] = progress.total_step_count
    stats[reward + "total_episode_count"] = progress.total_episode_count
    steps = float(np.sum(metrics.get(reward + "step_count", 0)))
    stats["train_TimeEvents/epoch_time"] = seconds
    stats["train_TimeEvents/steps_per_second"] = steps / max(seconds, 1e-9)
    return dict(sorted(stats.items(), key=lambda kv: not kv[0].startswith("train")))


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received`; the loop checks it between steps and stops cleanly.

    Raising from the handler instead could land inside a library holding a lock (an Orbax save, say) and hang
    the final save. A second SIGINT still raises KeyboardInterrupt at once, for a user who will not wait.
    """

    def __init__(self):
        self.received = ""
        self._previous = {}

    def _handle(self, signum, frame):
        if self.received and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def check_processes_agree(state, epoch: int) -> None:
    """Raises unless every process of a multi-process run holds the same state (compared by a checksum)."""
    from jax.experimental import multihost_utils

    floats = [np.asarray(x.addressable_data(0), np.float64).sum() for x in jax.tree.leaves(state)
              if isinstance(x, jax.Array) and jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
    multihost_utils.assert_equal(np.array(sum(floats), np.float32),
                                 f"the processes' training states differ after epoch {epoch}")


def non_finite(stats: dict) -> list[str]:
    """Algorithm statistics (losses, norms) that are NaN or infinite; reward statistics may be NaN legitimately."""
    return [tag for tag, value in stats.items() if "BaseEnvEvents" not in tag and not math.isfinite(value)]


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
        if self.latest.latest_step() != progress.epoch:  # the closing flush may follow a save of the same epoch
            self.latest.save(progress.epoch, state, progress.to_meta())
        self._last_flush = time.perf_counter()

    def run(self, state, progress: Progress):
        """Trains from `state`; returns the final state, progress, the best state seen, and why it stopped
        ("" when it ran its course; "SIGINT", "SIGTERM" or "non-finite" when cut short). A signal abandons
        the epoch in flight: the last completed one is what gets saved.

        Checkpoints (latest, and best when it improved) are written every `checkpoint_every_s` seconds,
        every `dump_interval` epochs, and when the loop ends for any reason. An epoch that produced NaN or
        infinite losses or norms is thrown away: the last good state is what gets saved.
        """
        echo, options = self.echo, self.options
        best_state, best_unsaved, stop_reason = None, False, ""
        self._last_flush = time.perf_counter()
        signals = StopSignals()
        try:
            with signals:
                while (options.n_epochs == 0 or progress.epoch < options.n_epochs) and not signals.received:
                    state, best_state, best_unsaved, stop_reason = self._epoch(
                        state, progress, best_state, best_unsaved, lambda: bool(signals.received))
                    if stop_reason:
                        break
                stop_reason = signals.received or ("" if stop_reason == "done" else stop_reason)
        except KeyboardInterrupt:  # a second Ctrl-C
            stop_reason = "SIGINT"
        if stop_reason in ("SIGINT", "SIGTERM"):
            echo(f"\n{stop_reason}: saving the latest checkpoint (epoch {progress.epoch}) to {self.latest.path}",
                 file=sys.stderr, flush=True)
        self._flush(state, progress, best_state, best_unsaved)
        if stop_reason:
            echo(f"Saved epoch {progress.epoch} to {self.latest.path}", file=sys.stderr, flush=True)
        if jax.process_count() > 1:
            echo(f"All {jax.process_count()} processes held the same training state after every epoch", flush=True)
        return state, progress, best_state, stop_reason

    def _epoch(self, state, progress: Progress, best_state, best_unsaved: bool, should_stop: Callable):
        """One epoch with its table, model selection and checkpointing. Returns the new
        (state, best_state, best_unsaved, stop_reason): "" to go on, "done" (early stopping or solved),
        "non-finite" (the epoch was thrown away), or "" with the state unchanged when a signal abandoned it."""
        echo, options = self.echo, self.options
        start = time.perf_counter()
        result = wait_with_progress(self.programs.train_epoch(state), progress.epoch, options.progress_interval_s,
                                    echo, should_stop)
        if result is None:
            return state, best_state, best_unsaved, ""
        new_state, metrics = result[0], jax.device_get(result[1])  # the state stays on the devices
        seconds = time.perf_counter() - start
        broken = non_finite(across_seeds({k: v for k, v in metrics.items() if "BaseEnvEvents" not in k}))
        if broken:
            echo(f"Error: non-finite {', '.join(broken)} in epoch {progress.epoch}: the run diverged "
                 f"(try a smaller learning rate). The last good state (epoch {progress.epoch}) is kept in "
                 f"{self.latest.path}", file=sys.stderr, flush=True)
            return state, best_state, best_unsaved, "non-finite"
        state = new_state
        if jax.process_count() > 1:
            check_processes_agree(state, progress.epoch)
        metrics.update(evaluation_stats(self.programs, state, jax.random.fold_in(self.eval_key, progress.epoch),
                                        per_seed=options.n_seeds > 1))
        progress.epoch += 1
        progress.total_step_count += int(np.sum(metrics.get("train_BaseEnvEvents/reward/step_count", 0)))
        progress.total_episode_count += int(np.sum(metrics["train_BaseEnvEvents/reward/episode_count"]))
        stats = epoch_stats(metrics, progress, seconds)
        echo(format_table(progress.epoch - 1, progress.epoch, stats), flush=True)
        if self.writer is not None:  # NaN (an epoch in which no episode ended) stays a gap in the curve
            for tag, value in stats.items():
                if math.isfinite(value):
                    self.writer.add_scalar(tag, value, progress.epoch)
        score = stats.get(EVAL_MEAN, math.nan)
        seed_scores = np.asarray(metrics.get(EVAL_MEAN, math.nan), np.float64)
        seed_best = np.asarray(progress.seed_best_scores or np.full(np.shape(seed_scores), -np.inf))
        improved = seed_scores > seed_best
        if np.any(improved):
            best_state, best_unsaved = select_seeds(improved, state, best_state), True
            progress.seed_best_scores = np.where(improved, seed_scores, seed_best).tolist()
            if options.n_seeds > 1:
                echo(f"-> new best model for seeds {np.flatnonzero(improved).tolist()}", flush=True)
        if score > progress.best_score:
            progress.best_score, progress.best_epoch = score, progress.epoch
            echo(f"-> new overall best model {score:.5f}!", flush=True)
        dump = options.dump_interval and progress.epoch % options.dump_interval == 0
        if dump or time.perf_counter() - self._last_flush >= options.checkpoint_every_s:
            self._flush(state, progress, best_state, best_unsaved)
            best_unsaved = False
        if options.patience and progress.epoch - max(progress.best_epoch, 0) >= options.patience:
            echo(f"-> no improvement since {options.patience} epochs: EARLY STOPPING!", flush=True)
            return state, best_state, best_unsaved, "done"
        if options.reward_threshold is not None and score >= options.reward_threshold:
            echo(f"-> evaluation mean {score:.3f} reached the reward threshold "
                 f"{options.reward_threshold:g}: stopping", flush=True)
            return state, best_state, best_unsaved, "done"
        return state, best_state, best_unsaved, ""
