"""Maze's console statistics table: `{step:>5}|{path:<88}|{value:>20}` with a 4-part path of 22 characters each."""

from __future__ import annotations

import math
from typing import Mapping

PART = 22


def tag_parts(tag: str) -> list[str]:
    """`train_BaseEnvEvents/reward/mean` -> [train, BaseEnvEvents, reward, mean] (missing parts are empty)."""
    head, *rest = tag.split("/")
    prefix, _, group = head.partition("_")
    return ([prefix, group] + rest + ["", ""])[:4]


def format_value(value) -> str:
    """Scalars as `{:>20.3f}`, lists as `[len:N, μ:X.X]` (Maze's formats)."""
    if isinstance(value, (list, tuple)):
        mean = sum(value) / len(value) if value else math.nan
        return f"[len:{len(value)}, μ:{mean:.1f}]".rjust(20)
    return f"{float(value):>20.3f}"


def format_table(iteration: int, step: int, stats: Mapping[str, object]) -> str:
    """The table printed after each epoch: one row per statistic, in the given order."""
    lines = [f"********** Iteration {iteration} **********",
             f"{'step':>5}|{'path':<88}|{'value':>20}",
             f"{'=' * 5}|{'=' * 88}|{'=' * 20}"]
    for tag, value in stats.items():
        path = "".join(part[:PART].ljust(PART) for part in tag_parts(tag))
        lines.append(f"{step:>5}|{path}|{format_value(value)}")
    return "\n".join(lines)
