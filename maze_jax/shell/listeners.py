"""What happens with each epoch's results besides model selection: the console table, TensorBoard, checkpoints.

The loop calls every listener's `on_epoch(loop, rows)` after an epoch and `on_end(loop, reason)` when it stops,
whatever the reason (as Brax's `progress_fn`). A listener of one's own (a plot, a tracker) has the same two methods.
"""

from __future__ import annotations

import math
import re
import sys
import time
from typing import Any, Callable

from maze_jax.shell.table import ActionSummary, format_table
from maze_jax.shell.table_rows import SEEDS_NOTE


class ConsoleTable:
    """Maze's statistics table on the console after every epoch, or with `compact` one line (`runner.table`)."""

    def __init__(self, echo: Callable = print, compact: bool = False):
        self.echo, self.compact = echo, compact

    def on_epoch(self, loop, rows: dict) -> None:
        if self.compact:
            self.echo(compact_line(loop.progress, rows), flush=True)
            return
        table = format_table(loop.progress.epoch - 1, loop.progress.epoch, rows)
        if getattr(loop, "seed_rows", None):  # several seeds: say how the rows combine them
            members = {re.split(r"/(?:train|eval)_", tag, maxsplit=1)[0] for tag in loop.seed_rows}
            header, rest = table.split("\n", 1)
            if any(name.startswith("config_") for name in members):  # a grid's members
                note = f"{len(members)} members, every configuration's seeds: {SEEDS_NOTE.replace('seeds', 'members')}"
            else:
                note = f"{len(members)} seeds: {SEEDS_NOTE}"
            table = f"{header} ({note})\n{rest}"
        self.echo(table, flush=True)

    def on_end(self, loop, reason: str) -> None:
        pass


def compact_line(progress, rows: dict) -> str:
    """One epoch in one line: `epoch 3 | 12,288 steps | 4,512 steps/s | train 21.4 | eval 35.2 | best 35.2 (3)`."""
    value = lambda tag: rows.get(tag, math.nan)
    return (f"epoch {progress.epoch:>4} | {progress.total_step_count:>12,} steps | "
            f"{value('train_TimeEvents/steps_per_second'):>9,.0f} steps/s | "
            f"train {value('train_BaseEnvEvents/reward/mean'):>9.4g} | eval {value('eval_BaseEnvEvents/reward/mean'):>9.4g}"
            f" | best {progress.best_score:.4g} ({progress.best_epoch})")


class TensorBoard:
    """Every table row as a TensorBoard scalar (an action head's: its mean action), and with several seeds each
    seed's own rows as `seed_<k>/<tag>`; NaN (an epoch in which no episode ended) stays a gap in the curve.
    `history` (a resumed run's: its parent's scalars, `scalar_history`) is written first, so that the run's folder
    shows one continuing curve."""

    def __init__(self, writer: Any, history: list = ()):
        self.writer = writer
        for tag, value, step, wall_time in history:
            writer.add_scalar(tag, value, step, walltime=wall_time)

    def on_epoch(self, loop, rows: dict) -> None:
        for tag, value in {**rows, **getattr(loop, "seed_rows", {})}.items():  # seeds' own curves: seed_<k>/...
            if isinstance(value, ActionSummary):  # an action head: the mean action (the count is the steps')
                value = value.mean
            if math.isfinite(value):
                self.writer.add_scalar(tag, value, loop.progress.epoch)

    def on_end(self, loop, reason: str) -> None:
        self.writer.flush()


class Checkpoints:
    """Writes the latest state, and the best one when it changed, every `every_s` seconds, every `dump_interval`
    epochs, and when the loop ends for any reason (`latest` and `best` are CheckpointDirs)."""

    def __init__(self, latest, best, every_s: float = 10.0, dump_interval: int = 0, echo: Callable = print):
        self.latest, self.best, self.every_s, self.dump_interval = latest, best, every_s, dump_interval
        self.echo = echo
        self._last_flush = time.perf_counter()
        self._best_saved = 0  # the loop's `best_version` last written

    def on_epoch(self, loop, rows: dict) -> None:
        epoch = loop.progress.epoch
        if (self.dump_interval and epoch % self.dump_interval == 0) or \
                time.perf_counter() - self._last_flush >= self.every_s:
            self.flush(loop)

    def on_end(self, loop, reason: str) -> None:
        self.flush(loop)
        if reason == "write-failed":  # a second try after the failure, which stderr's one line reported
            self.echo(f"Saved epoch {loop.progress.epoch} to {self.latest.path} on a second try", flush=True)
        elif reason:
            self.echo(f"Saved epoch {loop.progress.epoch} to {self.latest.path}", file=sys.stderr, flush=True)

    def flush(self, loop) -> None:
        progress = loop.progress
        if loop.best_version != self._best_saved:
            self.best.save(progress.best_epoch, loop.best_state, {**progress.to_meta(), "epoch": progress.best_epoch})
            self._best_saved = loop.best_version
        if self.latest.latest_step() != progress.epoch:  # the closing flush may follow a save of the same epoch
            self.latest.save(progress.epoch, loop.state, progress.to_meta())
        self._last_flush = time.perf_counter()
