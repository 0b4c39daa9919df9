"""After a sweep (`--multirun`, `+experiment=grid_search`, `+experiment=optuna`): one table of its jobs and one
picture of their learning curves, as Hydra's callback at the end of a multirun (`hydra.callbacks` in conf_train).

Everything comes from the job folders' files (`.hydra/overrides.yaml`, `learning_curve.csv`), so it works alike for
jobs run in this process and in a launcher's workers. It writes `sweep_summary.csv` and `sweep_curves.png` in the
sweep's folder and prints the table."""

from __future__ import annotations

import math
import os
from typing import Any

import yaml

from maze_jax.shell.files import open_for_writing
from maze_jax.shell.pictures import CURVE_DATA, _figure, curve_history, steps_label

SUMMARY_FILE, CURVES_FILE = "sweep_summary.csv", "sweep_curves.png"


def job_summaries(sweep_dir: str) -> list[dict]:
    """One dict per job folder of `sweep_dir` (numbered folders, in order): job, overrides (those that differ
    between jobs), best evaluation mean, its epoch, final evaluation mean, epochs, seconds, and the eval curve."""
    jobs = sorted((int(name), os.path.join(sweep_dir, name)) for name in os.listdir(sweep_dir)
                  if name.isdigit() and os.path.isdir(os.path.join(sweep_dir, name)))
    found = []
    for number, folder in jobs:
        try:
            with open(os.path.join(folder, ".hydra", "overrides.yaml")) as f:
                overrides = [str(o) for o in yaml.safe_load(f) or []]
        except (OSError, yaml.YAMLError):
            overrides = []
        curve = [row for row in curve_history(folder, 10**12) if row[2] == "eval"]
        best = max(curve, key=lambda row: row[3], default=None)
        started = os.path.getmtime(os.path.join(folder, ".hydra")) if os.path.isdir(os.path.join(folder, ".hydra")) \
            else math.nan
        data = os.path.join(folder, CURVE_DATA)
        found.append({"job": number, "overrides": overrides,
                      "best": best[3] if best else math.nan, "best_epoch": best[0] if best else -1,
                      "final": curve[-1][3] if curve else math.nan, "epochs": curve[-1][0] if curve else 0,
                      "seconds": os.path.getmtime(data) - started if os.path.exists(data) else math.nan,
                      "curve": [(row[1], row[3]) for row in curve]})
    shared = set.intersection(*(set(j["overrides"]) for j in found)) if found else set()
    for job in found:  # what sets the jobs apart
        job["overrides"] = " ".join(o for o in job["overrides"] if o not in shared) or "(none)"
    return found


def summary_table(jobs: list[dict], name: str = "job") -> str:
    """The jobs (`name`: what they are, e.g. a grid's configurations) as a table: job, overrides, best evaluation
    mean (at which epoch), final mean, epochs, and time where known."""
    width = max([len(j["overrides"]) for j in jobs] + [9])
    timed = any(not math.isnan(j["seconds"]) for j in jobs)
    lines = [f"{name:>6} | {'overrides':<{width}} | {'best eval mean':>14} | {'at epoch':>8} | {'final':>10} | "
             f"{'epochs':>6}" + (f" | {'time':>8}" if timed else "")]
    for j in jobs:
        lines.append(f"{j['job']:>6} | {j['overrides']:<{width}} | {j['best']:>14.3f} | {j['best_epoch']:>8} | "
                     f"{j['final']:>10.3f} | {j['epochs']:>6}" + (f" | {j['seconds']:>6.1f} s" if timed else ""))
    return "\n".join(lines)


def write_summary(sweep_dir: str, jobs: list[dict], summary_file: str = SUMMARY_FILE, curves_file: str = CURVES_FILE,
                  title: str = "") -> None:
    """`sweep_summary.csv` and `sweep_curves.png` (every job's evaluation mean against env steps) in `sweep_dir`
    (or the files named; `title`: what the jobs are)."""
    with open_for_writing(os.path.join(sweep_dir, summary_file), "w") as f:
        f.write("job,overrides,best_eval_mean,best_epoch,final_eval_mean,epochs,seconds\n")
        for j in jobs:
            f.write(f"{j['job']},\"{j['overrides']}\",{j['best']},{j['best_epoch']},{j['final']},{j['epochs']},"
                    f"{j['seconds']:.1f}\n")
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for j in jobs:
        if j["curve"]:
            steps, means = zip(*j["curve"])
            ax.plot(steps, means, marker="o" if len(steps) < 30 else None, label=f"{j['job']}: {j['overrides']}"[:60])
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
    ax.set_xlabel("env steps")
    ax.set_ylabel("eval reward mean")
    ax.set_title(f"{os.path.basename(os.path.normpath(sweep_dir))}: {title or f'{len(jobs)} jobs'}", fontsize=9)
    ax.grid(alpha=0.3)
    if any(j["curve"] for j in jobs):
        ax.legend(loc="best", fontsize=7)
    fig.tight_layout()
    with open_for_writing(os.path.join(sweep_dir, curves_file), "wb") as f:
        fig.savefig(f, dpi=80, format="png")


def summarize(sweep_dir: str, echo=print) -> list[dict]:
    """Prints the sweep's table and writes its files; the jobs' summaries."""
    jobs = job_summaries(sweep_dir)
    if not jobs:
        return jobs
    write_summary(sweep_dir, jobs)
    echo(f"\nSweep of {len(jobs)} jobs in {os.path.abspath(sweep_dir)} ({SUMMARY_FILE}, {CURVES_FILE}):\n"
         f"{summary_table(jobs)}", flush=True)
    return jobs


try:
    from hydra.experimental.callback import Callback
except ImportError:  # an older Hydra: no callbacks, no summary
    Callback = object


class SweepSummary(Callback):
    """Hydra's callback: the summary once every job of a multirun has ended."""

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        summarize(str(config.hydra.sweep.dir))
