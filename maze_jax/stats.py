"""Episode statistics as fixed-shape reductions, so they can leave a jitted epoch (Maze's reward statistics)."""

from __future__ import annotations

import jax.numpy as jnp

from maze_jax.envs.episodes import EpisodeRecord


def episode_statistics(record: EpisodeRecord, prefix: str) -> dict:
    """mean/std/min/max return and step-count statistics over the finished episodes in `record`.

    Keys are TensorBoard tags such as `train_BaseEnvEvents/reward/mean`; statistics of an epoch
    without a finished episode are NaN (the table shows them as nan) and episode_count is 0.
    """
    mask = record.done
    count = mask.sum()
    n = jnp.maximum(count, 1)
    returns = record.returns.astype(jnp.float32)
    lengths = record.lengths.astype(jnp.float32)
    mean = jnp.where(mask, returns, 0.0).sum() / n
    var = jnp.where(mask, (returns - mean) ** 2, 0.0).sum() / n
    none = count == 0
    nan = jnp.float32(jnp.nan)
    tag = f"{prefix}_BaseEnvEvents/reward/"
    return {
        tag + "mean": jnp.where(none, nan, mean),
        tag + "std": jnp.where(none, nan, jnp.sqrt(var)),
        tag + "min": jnp.where(none, nan, jnp.where(mask, returns, jnp.inf).min()),
        tag + "max": jnp.where(none, nan, jnp.where(mask, returns, -jnp.inf).max()),
        tag + "mean_step_count": jnp.where(none, nan, jnp.where(mask, lengths, 0.0).sum() / n),
        tag + "median_step_count": jnp.nanmedian(jnp.where(mask, lengths, nan)),
        tag + "episode_count": count,
    }
