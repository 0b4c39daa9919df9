"""Maze's console statistics table: `{step:>5}|{path:<88}|{value:>20}` with a 4-part path of 22 characters each."""

from __future__ import annotations

import math
from typing import Mapping, NamedTuple

PART = 22


def tag_parts(tag: str) -> list[str]:
    """`train_BaseEnvEvents/reward/mean` -> [train, BaseEnvEvents, reward, mean] (missing parts are empty); deeper
    tags keep the rest in the last part: `.../action/substep_0/piece_idx` -> [..., action, substep_0/piece_idx]."""
    head, *rest = tag.split("/")
    prefix, _, group = head.partition("_")
    return ([prefix, group] + rest[:1] + ["/".join(rest[1:])] + ["", ""])[:4]


class ActionSummary(NamedTuple):
    """An action head's row: how many actions it took in the epoch and their mean, shown `[len:N, μ:X]`."""

    count: int
    mean: float


def format_number(value: float) -> str:
    """Maze's `.3f` where it shows the value; small values keep 3 significant digits (0.00025, not 0.000) and
    large ones get thousands separators (461,869.151; 12,345,678 without decimals from a million up)."""
    value = float(value)
    if not math.isfinite(value) or value == 0:
        return f"{value:.3f}"
    magnitude = abs(value)
    if magnitude < 0.01:
        return f"{value:.3g}"
    if magnitude >= 1e15:
        return f"{value:.4e}"
    if magnitude >= 1e6:
        return f"{value:,.0f}"
    return f"{value:,.3f}"


def format_value(value, tag: str = "") -> str:
    """Scalars as numbers (`format_number`; a rate of steps per second always as a whole number with separators,
    so that it reads alike at any speed), lists and action summaries as `[len:N, μ:X.X]` (Maze's format)."""
    if tag.endswith("steps_per_second") and not isinstance(value, (ActionSummary, list, tuple)) and \
            math.isfinite(float(value)):
        return f"{float(value):,.0f}".rjust(20)
    if isinstance(value, ActionSummary):
        return f"[len:{value.count}, μ:{value.mean:.1f}]".rjust(20)
    if isinstance(value, (list, tuple)):
        mean = sum(value) / len(value) if value else math.nan
        return f"[len:{len(value)}, μ:{mean:.1f}]".rjust(20)
    return format_number(value).rjust(20)


def format_table(iteration: int, step: int, stats: Mapping[str, object]) -> str:
    """The table printed after each epoch: one row per statistic, in the given order."""
    lines = [f"********** Iteration {iteration} **********",
             f"{'step':>5}|{'path':<88}|{'value':>20}",
             f"{'=' * 5}|{'=' * 88}|{'=' * 20}"]
    for tag, value in stats.items():
        path = "".join(part[:PART].ljust(PART) for part in tag_parts(tag))
        lines.append(f"{step:>5}|{path}|{format_value(value, tag)}")
    return "\n".join(lines)
