"""Pictures of a run, saved into its run directory: the networks at the start (`networks.png`) and the learning
curve after every epoch (`learning_curve.png`). Drawn with matplotlib's object API (no pyplot state, no display),
imported when the first picture is drawn, and the curve on a thread of its own, so that neither delays training."""

from __future__ import annotations

import math
import os
import re
import threading
import time
from typing import Any

import jax
import numpy as np

from maze_jax.shell.files import open_for_writing

NETWORKS_FILE, CURVE_FILE, CURVE_DATA = "networks.png", "learning_curve.png", "learning_curve.csv"
CURVE_COLUMNS = ("epoch", "env_steps", "curve", "mean", "min", "max")
# The first import of matplotlib happens on a drawing thread; two threads importing a package's modules at once can
# see each other's half-imported modules.
IMPORTING = threading.Lock()


def _figure(width: float, height: float):
    """A matplotlib figure that only draws to files (safe on any thread)."""
    with IMPORTING:
        from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def layers(params) -> list[tuple[str, tuple]]:
    """(module path, kernel shape) of every layer with a kernel in a flax parameter tree, in the order the layers
    were created (`Dense_2` after `Dense_1`, nested modules by their own numbering). A recurrent cell (`models.cells`:
    an `input` and a `recurrent` kernel) is one layer: (the cell's path, (its input size, its memory size))."""
    found: dict[str, tuple] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        keys = [str(getattr(k, "key", k)) for k in path if str(getattr(k, "key", k)) != "params"]
        if keys and keys[-1] == "kernel":
            found["/".join(keys[:-1])] = tuple(np.shape(leaf))
    for name in [n for n in found if n.endswith("/recurrent") and n[:-len("recurrent")] + "input" in found]:
        cell = name[:-len("/recurrent")]
        found[cell] = (found.pop(cell + "/input")[0], found.pop(name)[0])
    natural = lambda name: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name[0])]
    return sorted(found.items(), key=natural)


def split_sub_steps(params, sub_step_names: tuple) -> dict[str, Any]:
    """A network's parameters by sub-step (`networks_<i>` of a structured env's networks), or {"": params}."""
    inner = params.get("params", params) if isinstance(params, dict) else params
    if sub_step_names and isinstance(inner, dict) and all(f"networks_{i}" in inner for i in
                                                          range(len(sub_step_names))):
        return {name: inner[f"networks_{i}"] for i, name in enumerate(sub_step_names)}
    return {"": params}


def draw_networks(path: str, networks: dict[str, Any], observation: dict[str, tuple], sub_step_names: tuple = (),
                  outputs: str = "", non_lin: str = "") -> None:
    """`networks` ({"policy": params, "critic": params}) as columns of layer boxes (a column per sub-step of a
    structured env), each box a layer with its input and output sizes, under the observation's keys and shapes:
    arrows lead from the observation through the layers (labelled with the `non_lin` between hidden layers) to the
    outputs."""
    with IMPORTING:
        from matplotlib.patches import Rectangle

    columns = [(f"{net} {sub}".strip(), layers(p)) for net, params in networks.items()
               for sub, p in split_sub_steps(params, sub_step_names).items()]
    height = max([len(ls) for _, ls in columns] + [1]) + 2
    fig = _figure(max(3.2 * len(columns) + 0.5, 6.0), 1.0 * height + 1.0)
    ax = fig.subplots()
    ax.set_xlim(0, max(len(columns), 1))
    ax.set_ylim(-height, 1.2)
    ax.axis("off")
    obs_text = ", ".join(f"{k} {shape}" for k, shape in observation.items())
    ax.text(len(columns) / 2, 0.8, f"observation: {obs_text}", ha="center", va="center", fontsize=9, wrap=True)
    for x, (title, column) in enumerate(columns):
        ax.text(x + 0.5, 0.2, title, ha="center", va="center", fontsize=11, weight="bold")
        ax.annotate("", (x + 0.5, 0.05), (len(columns) / 2, 0.65), arrowprops={"arrowstyle": "->", "color": "gray"})
        for y, (name, shape) in enumerate(column):
            top = -y - 0.5
            ax.add_patch(Rectangle((x + 0.08, top - 0.7), 0.84, 0.7, facecolor="#dbe9f6", edgecolor="#2b5d8a"))
            size = " x ".join(str(s) for s in shape)
            ax.text(x + 0.5, top - 0.35, f"{name}\n{size}", ha="center", va="center", fontsize=8)
            ax.annotate("", (x + 0.5, top), (x + 0.5, top + 0.3 + 0.15 * (not y)), arrowprops={"arrowstyle": "->"})
            if y and non_lin:  # between hidden layers (the last layer's outputs are the heads, taken as they are)
                ax.text(x + 0.55, top + 0.15, non_lin, ha="left", va="center", fontsize=7, color="#555555")
        if outputs and column and title.startswith("policy"):  # the critic's output is its value
            bottom = -len(column) - 0.2
            ax.annotate("", (len(columns) / 2, -height + 0.6), (x + 0.5, bottom), arrowprops={"arrowstyle": "->",
                                                                                             "color": "gray"})
    if outputs:
        ax.text(len(columns) / 2, -height + 0.4, outputs, ha="center", va="center", fontsize=9)
    fig.tight_layout()
    with open_for_writing(path, "wb") as f:
        fig.savefig(f, dpi=80, format="png")


def curve_history(run_dir: str, up_to_epoch: int) -> list[tuple]:
    """The rows of `run_dir`'s `learning_curve.csv` up to `up_to_epoch` (the epoch a resume starts from: the parent's
    epochs after its checkpoint are not this run's past); [] when it has none or it cannot be read."""
    try:
        with open(os.path.join(run_dir, CURVE_DATA)) as f:
            lines = f.read().splitlines()[1:]
        rows = [(int(e), int(n), c, float(m), float(lo), float(hi))
                for e, n, c, m, lo, hi in (line.split(",") for line in lines)]
    except (OSError, ValueError):
        return []
    return [row for row in rows if row[0] <= up_to_epoch and row[2] in LearningCurve.TAGS]


def describe_actions(dist) -> str:
    """`piece_idx: Categorical(50), cut_order: Categorical(2)`: an action distribution's heads, for a caption."""
    heads = getattr(dist, "heads", (("action", dist),))
    name = lambda d: f"Categorical({d.n})" if hasattr(d, "n") else f"{type(d).__name__}{tuple(getattr(d, 'shape', ()))}"
    return ", ".join(f"{head}: {name(d)}" for head, d in heads)


def steps_label(steps: float, _position=None) -> str:
    """Env steps as a reader counts them: 950, 250k, 1.2M."""
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(steps) >= scale:
            return f"{steps / scale:.3g}{suffix}"
    return f"{steps:.0f}"


class LearningCurve:
    """A listener: `learning_curve.png`, the train and eval reward (mean, with a min-max band) against env steps,
    under a `title` (env, algorithm, run), with the reward `threshold` that solves the env as a dashed line and the
    best model as a star; redrawn after every epoch on a background thread, at most every `min_interval_s` (epochs
    of a fraction of a second would keep a core drawing; those that end meanwhile are in the next drawing), and at
    the end unless the last drawing shows everything already."""

    TAGS = {"train": "train_BaseEnvEvents/reward/", "eval": "eval_BaseEnvEvents/reward/"}

    def __init__(self, run_dir: str, min_interval_s: float = 2.0, title: str = "", threshold: float | None = None,
                 history: list | None = None):
        self.path, self.data_path = os.path.join(run_dir, CURVE_FILE), os.path.join(run_dir, CURVE_DATA)
        self.points: dict[str, list] = {name: [] for name in self.TAGS}
        self.rows: list[tuple] = []  # what `learning_curve.csv` holds: CURVE_COLUMNS
        for row in history or []:  # a resumed run's curve goes on from its parent's
            self._add(*row)
        self.min_interval_s, self.title, self.threshold = min_interval_s, title, threshold
        self.best: tuple[float, float] | None = None  # (env steps, score) of the best model
        self._thread: threading.Thread | None = None
        self._drawn_at = -math.inf
        self._drawn: tuple | None = None  # what the last drawing shows (`_contents`)

    def on_epoch(self, loop, rows: dict) -> None:
        progress = loop.progress
        steps = progress.total_step_count
        for name, tag in self.TAGS.items():
            values = [rows.get(tag + s, math.nan) for s in ("mean", "min", "max")]
            if math.isfinite(values[0]):
                self._add(progress.epoch, steps, name, *values)
        if progress.best_epoch == progress.epoch and math.isfinite(progress.best_score):  # improved this epoch
            self.best = (steps, progress.best_score)
        now = time.monotonic()
        if now - self._drawn_at >= self.min_interval_s and (self._thread is None or not self._thread.is_alive()):
            self._drawn_at, self._drawn = now, self._contents()
            self.save_rows()
            snapshot = {k: list(v) for k, v in self.points.items()}
            self._thread = threading.Thread(target=self.draw, args=(snapshot, self.best), daemon=True)
            self._thread.start()

    def _contents(self) -> tuple:
        """What a drawing would show now: the number of points per curve and the best model's star."""
        return tuple(len(rows) for rows in self.points.values()), self.best

    def _add(self, epoch: int, steps: int, curve: str, mean: float, low: float, high: float) -> None:
        self.rows.append((int(epoch), int(steps), curve, float(mean), float(low), float(high)))
        self.points[curve].append((int(steps), float(mean), float(low), float(high)))

    def on_end(self, loop, reason: str) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._drawn != self._contents():  # a run that stops right after a drawing (0.2-0.3 s) is drawn once
            self.draw(self.points, self.best)
        self.save_rows()

    def save_rows(self) -> None:
        """`learning_curve.csv`: the curve's points (CURVE_COLUMNS), which a resumed run and a sweep's summary read."""
        partial = self.data_path + ".partial"
        with open_for_writing(partial, "w") as f:
            f.write(",".join(CURVE_COLUMNS) + "\n" + "".join(",".join(map(str, row)) + "\n" for row in self.rows))
        os.replace(partial, self.data_path)

    def draw(self, points: dict, best: tuple[float, float] | None) -> None:
        fig = _figure(7, 4)
        ax = fig.subplots()
        for (name, rows), color in zip(points.items(), ("#1f77b4", "#d62728")):
            if not rows:
                continue
            steps, mean, low, high = np.asarray(rows, np.float64).T
            ax.plot(steps, mean, color=color, marker="o" if len(rows) < 30 else None, label=f"{name} mean")
            ax.fill_between(steps, low, high, color=color, alpha=0.2, label=f"{name} min-max")
        if self.threshold is not None and math.isfinite(self.threshold):
            ax.axhline(self.threshold, color="gray", linestyle="--", linewidth=1,
                       label=f"reward threshold {self.threshold:g}")
        if best is not None:
            ax.plot(*best, marker="*", markersize=14, color="#ff9f1c", linestyle="none",
                    label=f"best model {best[1]:.4g}")
        if self.title:
            ax.set_title(self.title, fontsize=9)
        with IMPORTING:
            from matplotlib.ticker import FuncFormatter
        ax.xaxis.set_major_formatter(FuncFormatter(steps_label))
        ax.set_xlabel("env steps")
        ax.set_ylabel("episode reward")
        ax.grid(alpha=0.3)
        if any(points.values()):
            ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        partial = self.path + ".partial"
        with open_for_writing(partial, "wb") as f:
            fig.savefig(f, dpi=80, format="png")
        os.replace(partial, self.path)  # readers never see a half-written picture
