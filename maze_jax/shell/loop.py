"""The host training loop: one compiled epoch per iteration, then evaluation, model selection and stopping rules;
the table, TensorBoard and checkpoints are listeners (`maze_jax.shell.listeners`)."""

from __future__ import annotations

import math
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import jax
import numpy as np

from maze_jax.algorithms.metrics import REWARD, episode_table
from maze_jax.collectors import EnvFailed
from maze_jax.shell.checkpoints import CheckpointWriteError, from_savable, os_reason, to_savable
from maze_jax.shell.programs import Programs
from maze_jax.shell.progress import ProgressLine, duration, env_steps_so_far
from maze_jax.shell.signals import StopSignals
from maze_jax.shell.maze_tags import maze_tags
from maze_jax.shell.memory import is_out_of_memory, out_of_memory_line
from maze_jax.shell.table_rows import across_seeds, epoch_rows, non_finite, seed_rows

EVAL_MEAN = "eval_BaseEnvEvents/reward/mean"
TRAIN_MEAN = "train_BaseEnvEvents/reward/mean"


@dataclass
class Progress:
    """Host-side counters, saved as checkpoint metadata and restored on resume."""

    epoch: int = 0
    total_step_count: int = 0
    total_episode_count: int = 0
    eval_total_step_count: int = 0  # the steps and episodes of every evaluation so far (episodes that ended)
    eval_total_episode_count: int = 0
    best_score: float = -math.inf
    best_epoch: int = -1
    algorithm: str = ""
    seed_best_scores: list | None = None  # per seed, when several seeds train together
    eval_episodes: int | None = None  # episodes per evaluation batch (rollouts in such batches reproduce the
    # final evaluation)
    normalization: dict | None = None  # observation-normalisation statistics ({key: {name: nested list}})

    def to_meta(self) -> dict:
        meta = asdict(self)
        meta["best_score"] = None if math.isinf(self.best_score) else self.best_score
        return meta

    @classmethod
    def from_meta(cls, meta: dict) -> Progress:
        """The counters of a checkpoint's metadata; a ValueError names a value of the wrong type."""
        if not isinstance(meta, dict):
            raise ValueError(f"its metadata is {type(meta).__name__}, not a mapping")
        fields = {k: meta[k] for k in asdict(cls()) if k in meta}
        kinds = {"epoch": int, "total_step_count": int, "total_episode_count": int, "best_epoch": int,
                 "eval_total_step_count": int, "eval_total_episode_count": int,
                 "algorithm": str, "best_score": (int, float, type(None)), "eval_episodes": (int, type(None)),
                 "seed_best_scores": (list, int, float, type(None)), "normalization": (dict, type(None))}
        for key, kind in kinds.items():
            if key in fields and (isinstance(fields[key], bool) or not isinstance(fields[key], kind)):
                raise ValueError(f"its metadata has {key}={fields[key]!r}")
        if "epoch" not in fields or fields["epoch"] < 0:
            raise ValueError(f"its metadata has no valid epoch ({fields.get('epoch')!r})")
        if fields.get("best_score") is None:
            fields["best_score"] = -math.inf
        return cls(**fields)


@dataclass(frozen=True)
class LoopOptions:
    """When the loop stops, and how it reports a long epoch."""

    n_epochs: int = 0  # 0 = until stopped
    reward_threshold: float | None = None  # stop once the evaluation mean reaches it
    patience: int = 0  # stop when more epochs than this passed without a better evaluation; 0 = never
    n_seeds: int = 1  # the members: every configuration's seeds (n_configs * seeds per configuration)
    progress_interval_s: float = 5.0
    evaluate: bool = True  # False: no evaluation per epoch; the score is the epoch's mean training return (Maze)
    member_names: tuple = ()  # the members' names (a grid's `config_<k>`); () = `seed_<k>`
    n_configs: int = 1  # a grid's configurations: solved once each configuration's mean reaches the threshold

    def names(self) -> list[str]:
        return list(self.member_names) or [f"seed_{k}" for k in range(self.n_seeds)]

    def stopping_score(self, metrics: dict, rows: dict) -> float:
        """The score that stops a solved run: the mean over members, or a grid's worst configuration's mean."""
        if self.n_configs == 1:
            return rows.get(self.score_row, math.nan)
        scores = np.asarray(metrics.get(self.score_row, math.nan), np.float64).reshape(self.n_configs, -1)
        return float(np.min(np.nanmean(scores, axis=1))) if not np.isnan(scores).all(axis=1).any() else math.nan

    @property
    def score_row(self) -> str:
        """The row that selects the best model and stops a solved run."""
        return EVAL_MEAN if self.evaluate else TRAIN_MEAN


@dataclass
class LoopState:
    """What the loop carries between epochs: the training state, its counters, and the best state so far
    (`best_version` counts its changes, so listeners know when to write it)."""

    state: Any
    progress: Progress
    best_state: Any = None
    best_version: int = 0
    stop_reason: str = ""  # "" while running; then "done", "SIGINT", "SIGTERM" or "non-finite"
    listeners: list = field(default_factory=list)
    seed_rows: dict = field(default_factory=dict)  # the last epoch's rows of each seed (runs of several seeds)


def write_error(error: Exception) -> str:
    """What a failed write of the run's files says: a CheckpointWriteError as it is, another OSError (TensorBoard's
    writer, a picture) with its OS reason and file."""
    if isinstance(error, CheckpointWriteError):
        return str(error)
    where = f" ({error.filename})" if getattr(error, "filename", None) else ""
    return f"could not write the run's files{where}: {os_reason(error)}"


def evaluate_polling(programs: Programs, should_stop: Callable) -> Callable:
    """`programs.evaluate(state, key)` that polls `should_stop` while it runs and gives None as soon as that turned
    true: a Python env's episodes stop between steps, a compiled evaluation is abandoned where it is (Ctrl-C takes
    effect at once even when its episodes are long; the process exits without waiting for it)."""
    if programs.on_host:
        return lambda state, key: programs.evaluate(state, key, should_stop)
    return lambda state, key: wait_until_ready(lambda: programs.evaluate(state, key), should_stop)


def evaluation_stats(evaluate: Callable, state, key: jax.Array, prefix: str = "eval",
                     per_seed: bool = False) -> dict | None:
    """Statistics of one batch of evaluation episodes of `state`'s policy (arrays over seeds if per_seed); None
    when `evaluate` was stopped."""
    played = evaluate(state, key)
    return None if played is None else episode_table(*finished_episodes(jax.device_get(played)), prefix, per_seed)


def finished_episodes(episodes) -> tuple[np.ndarray, np.ndarray]:
    """Returns and lengths (float numpy arrays) of each env's first episode in `episodes` (EpisodeStats); NaN
    where that env's episode did not end within the evaluation's steps (an env that never ends, or ends later
    than its `max_steps_in_episode`): such an episode counts in no statistic."""
    ended = np.asarray(episodes.count) > 0
    return (np.where(ended, episodes.first_return, np.nan).astype(np.float64),
            np.where(ended, episodes.first_length, np.nan).astype(np.float64))


def unfinished_note(returns) -> str:
    """'' when every episode in `returns` ended; else a line saying how many did not (NaN in `returns`)."""
    missing = int(np.isnan(returns).sum())
    if not missing:
        return ""
    return (f"Note: {missing} of {np.size(returns)} episodes did not end within the evaluation's step limit: the "
            f"statistics leave them out (env.max_episode_steps=N ends every episode after N steps)")


def play_in_batches(evaluate: Callable, state, key: jax.Array, n_episodes: int,
                    should_stop: Callable = lambda: False, on_batch: Callable[[int], None] = lambda played: None):
    """Returns and lengths (float numpy arrays; episodes on the last axis, seeds before it; NaN for an episode that
    did not end, see `finished_episodes`) of `n_episodes` episodes, played one batch per call of
    `evaluate(state, key) -> EpisodeStats`, with keys `fold_in(key, i)`; None when `should_stop()` turned true
    between batches. `on_batch(episodes played so far)` follows each batch.

    The final evaluation of a run and `python -m maze_jax.rollout` both play episodes this way, so a rollout
    with the run's seed and batch size reproduces the final evaluation exactly."""
    batches, played = [], 0
    while played < n_episodes:
        if should_stop() or (episodes := evaluate(state, jax.random.fold_in(key, len(batches)))) is None:
            return None
        batches.append(finished_episodes(jax.device_get(episodes)))
        played += batches[-1][0].shape[-1]
        on_batch(played)
    returns = np.concatenate([returns for returns, _ in batches], axis=-1)[..., :n_episodes]
    lengths = np.concatenate([lengths for _, lengths in batches], axis=-1)[..., :n_episodes]
    return returns, lengths


def select_seeds(improved: np.ndarray, new, old):
    """`new` where `improved` (per seed, or one flag), else `old`: each seed keeps its own best state. A leaf
    without a seed axis (a host trainer's env key, which all its seeds' envs share) comes from `new`."""
    if old is None:
        return new
    flags = np.shape(improved)

    def pick(template, a, b):  # the template's shape leaves out a PRNG key's data
        if np.shape(template)[:len(flags)] != flags:
            return a
        return np.where(np.reshape(improved, flags + (1,) * (np.ndim(a) - len(flags))), a, b)

    return from_savable(new, jax.tree.map(pick, new, to_savable(new), to_savable(old)))


def reporting(should_stop: Callable, interval_s: float, report: Callable[[float], None]) -> Callable[[], bool]:
    """`should_stop` that also calls `report(seconds so far)` every `interval_s`: whoever waits on an epoch polls it
    (the JAX path below, and a host epoch while it waits for its Python envs)."""
    start = time.perf_counter()
    next_report = [start + interval_s]

    def check() -> bool:
        now = time.perf_counter()
        if now >= next_report[0]:
            report(now - start)
            next_report[0] = now + interval_s
        return should_stop()

    return check


class EpisodeProgress:
    """A line every `interval_s` while `n` episodes are played (a final evaluation, a rollout; on a slow Python
    env they take minutes): `... <what>: 40/100 episodes | running for 25s`. Hand the player `poll` as its
    `should_stop` (it says whether `should_stop` turned true) and `on_batch` as `play_in_batches`' count."""

    def __init__(self, what: str, n: int, interval_s: float, echo: Callable, should_stop: Callable = lambda: False):
        self.played = 0
        self.poll = reporting(should_stop, interval_s, lambda s: echo(
            f"... {what}: {self.played:,}/{n:,} episodes | running for {duration(s)}", flush=True))

    def on_batch(self, played: int) -> None:
        self.played = played


def wait_until_ready(call: Callable[[], Any], should_stop: Callable[[], bool]):
    """The result of `call()` (a compiled program's call), computed on a thread of its own while this one polls
    `should_stop` (which may report progress, see `reporting`) every 10 ms. Returns the result (still on the
    devices), or None (abandoned: the program runs on, and the command exits without waiting for it) as soon as
    `should_stop()` is true; an error of the call is raised here. The thread is what keeps the wait responsive
    where JAX runs CPU programs in the calling thread (`xla_flags.run_programs_inline`): the call then returns
    only when the program is done."""
    outcome: list = []

    def run():
        try:
            outcome.append((jax.block_until_ready(call()), None))
        except BaseException as error:  # noqa: BLE001 (raised in the waiting thread)
            outcome.append((None, error))

    thread = threading.Thread(target=run, name="program", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.01)
        if thread.is_alive() and should_stop():
            return None
    result, error = outcome[0]
    if error is not None:
        raise error
    return result


def check_processes_agree(state, epoch: int) -> None:
    """Raises unless every process of a multi-process run holds the same state (compared by a checksum)."""
    from jax.experimental import multihost_utils

    floats = [np.asarray(x.addressable_data(0), np.float64).sum() for x in jax.tree.leaves(state)
              if isinstance(x, jax.Array) and jax.numpy.issubdtype(x.dtype, jax.numpy.floating)]
    multihost_utils.assert_equal(np.array(sum(floats), np.float32),
                                 f"the processes' training states differ after epoch {epoch}")


class TrainingLoop:
    """Runs epochs until `n_epochs`, early stopping, the reward threshold, a signal or divergence. After each
    epoch: evaluation, model selection (per seed), then every listener; when it stops, every listener again."""

    def __init__(self, programs: Programs, options: LoopOptions, eval_key: jax.Array, listeners: list = (),
                 echo: Callable = print, signals: StopSignals | None = None, progress_line: ProgressLine | None = None,
                 algorithm: str = "", adapt: Callable | None = None):
        self.programs, self.options, self.eval_key = programs, options, eval_key
        self.adapt = adapt  # after model selection: `adapt(loop, metrics) -> lines` may change the state (PBT)
        self.algorithm = algorithm  # names the event groups of the learner's plain metrics (`maze_tags`)
        self.listeners, self.echo = list(listeners), echo
        self.signals = signals or StopSignals(echo)  # the caller's, active for the whole run; else never set
        self.progress_line = progress_line  # also one of the listeners; reports while an epoch runs

    def run(self, loop: LoopState) -> LoopState:
        """Trains from `loop.state` and returns the loop state; `stop_reason` is "" when it ran its course, else
        "SIGINT", "SIGTERM", "non-finite", "env-failed", "write-failed" or "out-of-memory" (an allocation failed in
        an epoch). A signal abandons the epoch in flight: the last completed one is what listeners save. An epoch
        with NaN or infinite losses or norms is thrown away, and so is one in which a Python env failed or memory
        ran out."""
        echo, options, signals = self.echo, self.options, self.signals
        try:
            while (options.n_epochs == 0 or loop.progress.epoch < options.n_epochs) and not signals.received:
                self.epoch(loop, lambda: bool(signals.received))
                if loop.stop_reason:
                    break
            loop.stop_reason = signals.received or ("" if loop.stop_reason == "done" else loop.stop_reason)
        except EnvFailed as failed:
            echo(f"Error: {str(failed).rstrip('.')}. The last good state (epoch {loop.progress.epoch}) is kept",
                 file=sys.stderr, flush=True)  # the env's own message may end in a full stop
            loop.stop_reason = failed.reason
        except (CheckpointWriteError, OSError) as failed:  # a full disk, say: checkpoints, TensorBoard, pictures
            echo(f"Error: {write_error(failed)}. The last complete checkpoint is kept", file=sys.stderr, flush=True)
            loop.stop_reason = "write-failed"
        except Exception as error:
            if not is_out_of_memory(error):
                raise
            echo(f"Error: {out_of_memory_line(error)}. The last good state (epoch {loop.progress.epoch}) is kept",
                 file=sys.stderr, flush=True)
            loop.stop_reason = "out-of-memory"
        if loop.stop_reason in ("SIGINT", "SIGTERM"):
            echo(f"\n{loop.stop_reason}: saving the latest checkpoint (epoch {loop.progress.epoch})", file=sys.stderr,
                 flush=True)
        signals.busy = f"saving the latest checkpoint (epoch {loop.progress.epoch})"
        for listener in self.listeners:
            try:
                listener.on_end(loop, loop.stop_reason)
            except (CheckpointWriteError, OSError) as failed:
                if loop.stop_reason != "write-failed":
                    echo(f"Error: {write_error(failed)}. The last complete checkpoint is kept", file=sys.stderr,
                         flush=True)
                loop.stop_reason = "write-failed"
        signals.busy = ""
        if jax.process_count() > 1:
            echo(f"All {jax.process_count()} processes held the same training state after every epoch", flush=True)
        return loop

    def epoch(self, loop: LoopState, should_stop: Callable) -> None:
        """One epoch with its evaluation, model selection, listeners and stopping rules; sets `loop.stop_reason`
        to "done" (early stopping or solved) or "non-finite" (the epoch was thrown away)."""
        echo, options, progress = self.echo, self.options, loop.progress
        start = time.perf_counter()
        line = self.progress_line
        steps, doing = self.programs.epoch_env_steps, [""]  # doing: what the epoch is at, once past training
        report = (lambda s: line.during_epoch(progress, s, echo, steps(), doing[0])) if line is not None else \
            (lambda s: echo(f"... epoch {progress.epoch} running for {s:.0f} s{env_steps_so_far(steps())}{doing[0]}",
                            flush=True))
        poll = reporting(should_stop, options.progress_interval_s, report)  # host epochs and evaluations poll it
        if self.programs.on_host:
            result = self.programs.train_epoch(loop.state, poll)
        else:
            result = wait_until_ready(lambda: self.programs.train_epoch(loop.state), poll)
        if result is None:  # a signal: the epoch is abandoned
            return
        new_state, metrics = result[0], maze_tags(jax.device_get(result[1]), self.algorithm)  # state: on devices
        seconds = time.perf_counter() - start
        checks = {k.split("/", 1)[1]: int(np.sum(metrics.pop(k))) for k in list(metrics) if k.startswith("check/")}
        bad_data = [f"{k.replace('non_finite_', '')} in {n} steps" for k, n in checks.items() if n]
        broken = non_finite(across_seeds({k: v for k, v in metrics.items() if "BaseEnvEvents" not in k}))
        if bad_data or broken:
            cause = (f"the env returned NaN or infinite {' and '.join(bad_data)}" if bad_data else
                     f"non-finite {', '.join(broken)}: the run diverged (try a smaller learning rate or step size)")
            echo(f"Error: {cause} in epoch {progress.epoch}. The last good state (epoch {progress.epoch}) is kept",
                 file=sys.stderr, flush=True)
            loop.stop_reason = "non-finite"
            return
        doing[0] = ", evaluating"  # a slow env's evaluation takes minutes, and the env steps stop counting
        evaluation = evaluation_stats(evaluate_polling(self.programs, poll), new_state,
                                      jax.random.fold_in(self.eval_key, progress.epoch), per_seed=options.n_seeds > 1
                                      ) if options.evaluate else {}
        if evaluation is None:  # a signal during a host evaluation: the epoch is abandoned, as mid-epoch
            return
        loop.state = new_state
        if jax.process_count() > 1:
            check_processes_agree(loop.state, progress.epoch)
        metrics.update(evaluation)
        progress.epoch += 1
        progress.total_step_count += int(np.sum(metrics.get("train_BaseEnvEvents/reward/step_count", 0)))
        progress.total_episode_count += int(np.sum(metrics["train_BaseEnvEvents/reward/episode_count"]))
        eval_totals = None
        if evaluation:
            counts = np.asarray(evaluation[f"eval_{REWARD}episode_count"])
            lengths = np.nan_to_num(np.asarray(evaluation[f"eval_{REWARD}mean_step_count"], np.float64)) * counts
            progress.eval_total_step_count += int(round(float(np.sum(lengths))))
            progress.eval_total_episode_count += int(np.sum(counts))
            eval_totals = (progress.eval_total_step_count, progress.eval_total_episode_count)
        rows = epoch_rows(metrics, progress.total_step_count, progress.total_episode_count, seconds, eval_totals)
        loop.seed_rows = seed_rows(metrics, options.names()) if options.n_seeds > 1 else {}
        messages = self.select_model(loop, metrics, rows)
        if self.adapt is not None:
            messages += self.adapt(loop, metrics)
        for listener in self.listeners:
            listener.on_epoch(loop, rows)
        for message in messages:
            echo(message, flush=True)
        self.check_stopping(loop, options.stopping_score(metrics, rows))

    def select_model(self, loop: LoopState, metrics: dict, rows: dict) -> list[str]:
        """Keeps each seed's best state by its evaluation mean; returns the lines to print."""
        progress, messages = loop.progress, []
        seed_scores = np.asarray(metrics.get(self.options.score_row, math.nan), np.float64)
        seed_best = np.asarray(progress.seed_best_scores or np.full(np.shape(seed_scores), -np.inf))
        improved = seed_scores > seed_best
        if np.any(improved):
            loop.best_state = select_seeds(improved, loop.state, loop.best_state)
            loop.best_version += 1
            progress.seed_best_scores = np.where(improved, seed_scores, seed_best).tolist()
            if self.options.member_names:
                names = [self.options.member_names[k] for k in np.flatnonzero(improved)]
                messages.append(f"-> new best model for {', '.join(names)}")
            elif self.options.n_seeds > 1:
                messages.append(f"-> new best model for seeds {np.flatnonzero(improved).tolist()}")
        score = rows.get(self.options.score_row, math.nan)
        if score > progress.best_score:
            progress.best_score, progress.best_epoch = score, progress.epoch
            messages.append(f"-> new overall best model {score:.5f}!")
        return messages

    def check_stopping(self, loop: LoopState, score: float) -> None:
        options, progress = self.options, loop.progress
        # as Maze: stop once the epochs since the last improvement exceed `patience`
        if options.patience and progress.epoch - max(progress.best_epoch, 0) > options.patience:
            self.echo(f"-> no improvement since {options.patience} epochs: EARLY STOPPING!", flush=True)
            loop.stop_reason = "done"
        elif options.reward_threshold is not None and score >= options.reward_threshold:
            which = f"every configuration's evaluation mean (the lowest {score:.3f})" if options.n_configs > 1 \
                else f"evaluation mean {score:.3f}"
            self.echo(f"-> {which} reached the reward threshold {options.reward_threshold:g}: stopping", flush=True)
            loop.stop_reason = "done"
