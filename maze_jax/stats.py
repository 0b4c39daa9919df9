"""Episode statistics as fixed-shape reductions, so they can leave a jitted epoch (Maze's reward statistics)."""

from __future__ import annotations

import jax.numpy as jnp

from maze_jax.envs.episodes import EpisodeStats


def median_from_histogram(hist: jnp.ndarray) -> jnp.ndarray:
    """Median of the values counted in `hist` (hist[v] = how often v occurred); NaN when empty."""
    n = hist.sum()
    cumulative = jnp.cumsum(hist)
    order_stat = lambda k: jnp.searchsorted(cumulative, k, side="right")
    median = (order_stat((n - 1) // 2) + order_stat(n // 2)) / 2
    return jnp.where(n > 0, median, jnp.nan).astype(jnp.float32)


def episode_statistics(stats: EpisodeStats, prefix: str) -> dict:
    """mean/std/min/max return and step-count statistics over the finished episodes in `stats`.

    Keys are TensorBoard tags such as `train_BaseEnvEvents/reward/mean`; statistics of an epoch
    without a finished episode are NaN (the table shows them as nan) and episode_count is 0.
    """
    count = stats.count.sum()
    n = jnp.maximum(count, 1)
    mean = (stats.count * stats.return_mean).sum() / n  # the envs' running means and deviations merged (Chan)
    var = (stats.return_m2 + stats.count * (stats.return_mean - mean) ** 2).sum() / n
    none = count == 0
    nan = jnp.float32(jnp.nan)
    tag = f"{prefix}_BaseEnvEvents/reward/"
    return {
        tag + "mean": jnp.where(none, nan, mean),
        tag + "std": jnp.where(none, nan, jnp.sqrt(var)),
        tag + "min": jnp.where(none, nan, stats.return_min.min()),
        tag + "max": jnp.where(none, nan, stats.return_max.max()),
        tag + "mean_step_count": jnp.where(none, nan, stats.length_sum.sum() / n),
        tag + "median_step_count": median_from_histogram(stats.length_hist),
        tag + "episode_count": count,
        # not table rows: the loop stops the run when the env gave NaN or infinite data
        "check/non_finite_rewards": stats.bad_rewards.sum(),
        "check/non_finite_observations": stats.bad_observations.sum(),
    }
