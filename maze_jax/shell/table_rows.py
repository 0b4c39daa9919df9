"""Table rows on the host: means across seeds, per-seed curves, action summaries and an epoch's rows.

Computed with numpy rather than by compiled programs, so nothing here adds compile time to a run's start."""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np

from maze_jax.algorithms.metrics import DISCRETE_ACTIONS, REWARD, is_action_count
from maze_jax.shell.table import ActionSummary

ENV_EVENT_STATISTICS = ("/step_mean", "/step_max", "/mean_episode_total")  # NaN where no episode ended: no alarm


SEEDS_NOTE = "counts are totals, min and max over all seeds' episodes, the rest means over seeds"


def across_seeds(values: dict) -> dict:
    """Table rows from per-seed values (a leading seed axis; scalars pass as they are), each what its name says:
    counts are summed, `min` and `max` are the extremes of all seeds' episodes, a reward `mean` and `std` are
    pooled over all episodes, other rows are means over seeds (`SEEDS_NOTE`). The evaluation mean also gets the
    spread of the seeds' means (`mean_seed_min`, `mean_seed_max`)."""
    rows = {}
    for tag, v in values.items():
        v = np.asarray(v, np.float64)
        if not v.ndim:
            rows[tag] = float(v)
        elif tag.endswith(("/episode_count", "/step_count")):
            rows[tag] = float(np.sum(v))
        elif tag.endswith(("/min", "/max")):
            with warnings.catch_warnings():  # seeds without an ended episode are NaN
                warnings.simplefilter("ignore", RuntimeWarning)
                rows[tag] = float(np.nanmin(v) if tag.endswith("/min") else np.nanmax(v))
        else:
            rows[tag] = float(np.mean(v))
    for tag, v in values.items():
        if not (np.ndim(v) and tag.endswith(REWARD + "mean")):
            continue
        base = tag[: -len("mean")]
        counts = np.asarray(values.get(base + "episode_count", np.ones_like(v)), np.float64)
        means, stds = np.asarray(v, np.float64), np.asarray(values.get(base + "std", np.zeros_like(v)), np.float64)
        ended = counts > 0
        if ended.any():  # Chan's merge of the seeds' means and deviations
            n = counts[ended].sum()
            mean = (counts[ended] * means[ended]).sum() / n
            rows[tag] = float(mean)
            if base + "std" in values:
                rows[base + "std"] = float(np.sqrt((counts[ended] * (stds[ended] ** 2 + (means[ended] - mean) ** 2)
                                                    ).sum() / n))
        if not tag.startswith("train"):
            rows[tag + "_seed_min"], rows[tag + "_seed_max"] = float(np.min(v)), float(np.max(v))
    return rows


def seed_rows(metrics: dict, names: list[str]) -> dict:
    """Each member's own rows, `<name>/<tag>` (`seed_<k>/...`, a grid's `config_<k>/...`), for TensorBoard curves
    per seed or configuration (runs of several)."""
    rows = {}
    for tag, v in metrics.items():
        v = np.asarray(v, np.float64)
        if v.ndim == 1 and len(v) == len(names) and not is_action_count(tag):
            rows.update({f"{name}/{tag}": float(v[k]) for k, name in enumerate(names)})
    return rows


def action_rows(metrics: dict) -> dict:
    """The action statistics of an epoch (`stats.action_statistics`, seeds pooled) as `[len:N, μ:X]` rows."""
    rows = {}
    for tag, value in metrics.items():
        if not is_action_count(tag):
            continue
        value = np.asarray(value, np.float64)
        totals = value.reshape(-1, value.shape[-1]).sum(0)  # every seed's actions together
        if tag.startswith(DISCRETE_ACTIONS):
            count, total = totals.sum(), (totals * np.arange(len(totals))).sum()
        else:
            count, total = totals
        rows[tag] = ActionSummary(int(round(count)), float(total / count) if count else math.nan)
    return rows


def epoch_rows(metrics: dict, total_steps: int, total_episodes: int, seconds: float,
               eval_totals: tuple[int, int] | None = None) -> dict:
    """An epoch's table rows: the metrics (means over seeds), cumulative counts (training's, and with `eval_totals`
    the evaluations' steps and episodes) and timing; training rows first."""
    rows = across_seeds({k: v for k, v in metrics.items() if not k.endswith("/step_count") and not is_action_count(k)})
    rows.update(action_rows(metrics))
    rows[f"train_{REWARD}total_step_count"] = total_steps
    rows[f"train_{REWARD}total_episode_count"] = total_episodes
    if eval_totals is not None:
        rows[f"eval_{REWARD}total_step_count"], rows[f"eval_{REWARD}total_episode_count"] = eval_totals
    steps = float(np.sum(metrics.get(f"train_{REWARD}step_count", 0)))
    rows["train_TimeEvents/epoch_time"] = seconds
    rows["train_TimeEvents/steps_per_second"] = steps / max(seconds, 1e-9)
    return dict(sorted(rows.items(), key=maze_order(list(rows))))


# Maze's order of the reward statistics in its table
REWARD_ORDER = ("mean", "std", "min", "max", "mean_step_count", "median_step_count", "episode_count",
                "total_step_count", "total_episode_count")


def maze_order(tags: list) -> Callable:
    """A sort key over (tag, value) items for Maze's table order: training rows, then evaluation rows; in each, the
    reward statistics in Maze's order first, then the env's and the algorithm's events as they came, the timing
    last."""
    first_seen = {tag: i for i, tag in enumerate(tags)}

    def key(item) -> tuple:
        tag = item[0]
        stage = 0 if tag.startswith("train") else 1
        statistic = tag.rsplit("/", 1)[-1]
        if f"_{REWARD}" in tag and statistic in REWARD_ORDER:
            return stage, 0, REWARD_ORDER.index(statistic)
        return stage, 2 if "_TimeEvents/" in tag else 1, first_seen[tag]

    return key


def non_finite(rows: dict) -> list[str]:
    """Algorithm statistics (losses, norms) that are NaN or infinite; reward statistics may be NaN legitimately."""
    return [tag for tag, value in rows.items() if "BaseEnvEvents" not in tag and not is_action_count(tag)
            and not tag.endswith(ENV_EVENT_STATISTICS) and not math.isfinite(value)]
