"""Progress you can read at a glance: env steps, steps per second, epoch, best score and an ETA.

On a terminal, a live tqdm line at the bottom (the table scrolls above it); elsewhere (CI, log files) plain lines
every `interval_s` while an epoch runs, since the table after each epoch says the rest."""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import IO, Callable


def duration(seconds: float) -> str:
    """`42s`, `3m05s`, `2h07m`."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def env_steps_so_far(n: int) -> str:
    """`, 12,288 env steps so far` (nothing for 0: a compiled epoch, or no step yet)."""
    return f", {n:,} env steps so far" if n else ""


class ProgressLine:
    """A listener that also reports while an epoch runs (`during_epoch`) and wraps the run's `echo` so that printed
    lines and the live line do not overwrite each other. `n_epochs` 0 (until stopped) gives no ETA."""

    def __init__(self, n_epochs: int, start_epoch: int, stream: IO | None = None, interactive: bool | None = None,
                 may_stop_early: bool = False):
        self.may_stop_early = may_stop_early  # a reward threshold or patience may end the run first: the ETA is a bound
        self.stream = stream or getattr(sys.stderr, "console", sys.stderr)  # the terminal, not train.log's copy
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.n_epochs, self.start_epoch = n_epochs, start_epoch
        self.started = time.perf_counter()
        self.steps_per_second = math.nan
        self.bar = None
        if self.interactive:
            from tqdm import tqdm

            width = shutil.get_terminal_size((120, 20)).columns or 120  # a terminal of unknown size reports 0
            self.bar = tqdm(total=n_epochs or None, initial=start_epoch, unit="epoch", file=self.stream,
                            ncols=width, leave=False, bar_format="{l_bar}{bar:20}| {n_fmt}/{total_fmt}{postfix}"
                            if n_epochs else "{n_fmt} epochs{postfix}")

    def status(self, progress, running_s: float | None = None, env_steps: int = 0, doing: str = "") -> str:
        """`epoch 3/50 | 1,234,567 steps | 45,678 steps/s | best 123.4 | ETA 2m10s` (`ETA at most 2m10s` when a
        reward threshold or early stopping may end the run before its last epoch); while an epoch runs, also
        `epoch 3 running for 45s, 12,288 env steps so far` (`env_steps`: a Python env's epoch, counted as it goes),
        then what it is at past its training (`doing`: `, evaluating`)."""
        parts = [f"epoch {progress.epoch}" + (f"/{self.n_epochs}" if self.n_epochs else ""),
                 f"{progress.total_step_count:,} steps"]
        if math.isfinite(self.steps_per_second):
            parts.append(f"{self.steps_per_second:,.0f} steps/s")
        if math.isfinite(progress.best_score):
            parts.append(f"best {progress.best_score:.4g}")
        done = progress.epoch - self.start_epoch
        if self.n_epochs and done > 0:
            per_epoch = (time.perf_counter() - self.started) / done
            bound = "at most " if self.may_stop_early else ""
            parts.append(f"ETA {bound}{duration(per_epoch * max(self.n_epochs - progress.epoch, 0))}")
        if running_s is not None:
            parts.append(f"epoch {progress.epoch} running for {duration(running_s)}{env_steps_so_far(env_steps)}"
                         f"{doing}")
        return " | ".join(parts)

    def during_epoch(self, progress, running_s: float, echo: Callable, env_steps: int = 0, doing: str = "") -> None:
        """While a long epoch runs: the live line, or a plain line."""
        if self.bar is not None:
            self.bar.set_postfix_str(self.status(progress, running_s, env_steps, doing))
        else:
            echo(f"... {self.status(progress, running_s, env_steps, doing)}", flush=True)

    def on_epoch(self, loop, rows: dict) -> None:
        self.steps_per_second = rows.get("train_TimeEvents/steps_per_second", math.nan)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(self.status(loop.progress))

    def on_end(self, loop, reason: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def wrap(self, echo: Callable) -> Callable:
        """`echo` that lifts the live line out of the way of what it prints."""
        def echo_around(*args, **kwargs):
            if self.bar is None:
                return echo(*args, **kwargs)
            self.bar.clear()
            try:
                return echo(*args, **kwargs)
            finally:
                self.bar.refresh()

        return echo_around
