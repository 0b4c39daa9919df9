"""What a grid run shows of each configuration: a table per epoch (train and eval mean, best so far), and at the end
the summary table, `grid_summary.csv` and `grid_curves.png` (every configuration's evaluation curve), in the form a
sweep's summary takes (`shell.sweep_summary`). With several seeds, a configuration's value is its seeds' mean."""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from maze_jax.algorithms.metrics import REWARD
from maze_jax.shell.grid import Grid
from maze_jax.shell.sweep_summary import summary_table, write_summary

SUMMARY_FILE, CURVES_FILE = "grid_summary.csv", "grid_curves.png"
EVAL, TRAIN, FINAL = f"eval_{REWARD}mean", f"train_{REWARD}mean", f"final_{REWARD}mean"
TOTAL_STEPS = f"train_{REWARD}total_step_count"


class GridTable:
    """A listener: after each epoch's table, one line per configuration; it keeps each configuration's evaluation
    curve (from `history`, a resumed run's parent's scalars, on) for the summary at the end."""

    def __init__(self, grid: Grid, n_seeds: int, echo: Callable = print, history: list = ()):
        self.grid, self.n_seeds, self.echo = grid, n_seeds, echo
        self.names = grid.member_names(n_seeds)
        self.curves: list[list[tuple]] = [[] for _ in range(grid.size)]  # (epoch, env steps per member, eval mean)
        scalars: dict[int, dict] = {}
        for tag, value, step, _ in history:
            scalars.setdefault(step, {})[tag] = value
        for epoch in sorted(scalars):
            self._add(epoch, scalars[epoch])

    def config_means(self, rows: dict, tag: str) -> np.ndarray:
        """Each configuration's mean of its members' `tag` (NaN where none has it)."""
        values = np.array([rows.get(f"{name}/{tag}", math.nan) for name in self.names], np.float64)
        with np.errstate(all="ignore"):
            return np.array([np.nan if np.isnan(v).all() else np.nanmean(v)
                             for v in values.reshape(self.grid.size, self.n_seeds)])

    def _add(self, epoch: int, rows: dict) -> None:
        steps = rows.get(TOTAL_STEPS, math.nan) / len(self.names)
        for k, value in enumerate(self.config_means(rows, EVAL)):
            if not math.isnan(value):
                self.curves[k].append((epoch, steps, float(value)))

    def on_epoch(self, loop, rows: dict) -> None:
        members = {**rows, **loop.seed_rows}
        self._add(loop.progress.epoch, members)
        train, evaluation = self.config_means(members, TRAIN), self.config_means(members, EVAL)
        width = max([len(self.grid.label(k)) for k in range(self.grid.size)] + [len("hyperparameters")])
        lines = [f"{'config':>6} | {'hyperparameters':<{width}} | {'train mean':>10} | {'eval mean':>10} | "
                 f"{'best (epoch)':>18}"]
        for k in range(self.grid.size):
            best = max(self.curves[k], key=lambda point: point[2], default=None)
            at = f"{best[2]:.3f} ({best[0]})" if best else "-"
            lines.append(f"{k:>6} | {self.grid.label(k):<{width}} | {train[k]:>10.3f} | {evaluation[k]:>10.3f} | "
                         f"{at:>18}")
        self.echo("\n".join(lines), flush=True)

    def on_end(self, loop, reason: str) -> None:
        pass

    def summaries(self, final: dict) -> list[dict]:
        """One dict per configuration, as `sweep_summary.summary_table` shows jobs."""
        finals = self.config_means(final, FINAL)
        jobs = []
        for k in range(self.grid.size):
            curve = self.curves[k]
            best = max(curve, key=lambda point: point[2], default=None)
            jobs.append({"job": k, "overrides": self.grid.label(k), "best": best[2] if best else math.nan,
                         "best_epoch": best[0] if best else -1, "final": float(finals[k]),
                         "epochs": curve[-1][0] if curve else 0, "seconds": math.nan,
                         "curve": [(steps, mean) for _, steps, mean in curve]})
        return jobs


def report(table: GridTable, final: dict, run_dir: str, echo: Callable = print) -> list[dict]:
    """The grid's summary table (final: the final evaluation of each configuration's best model), printed and
    written beside the run's files."""
    jobs = table.summaries(final)
    write_summary(run_dir, jobs, SUMMARY_FILE, CURVES_FILE, f"{table.grid.size} configurations")
    seeds = f", each the mean of its {table.n_seeds} seeds" if table.n_seeds > 1 else ""
    echo(f"\nGrid of {table.grid.size} configurations ({SUMMARY_FILE}, {CURVES_FILE}{seeds}; final: the final "
         f"evaluation of its best model):\n{summary_table(jobs, 'config')}", flush=True)
    return jobs
