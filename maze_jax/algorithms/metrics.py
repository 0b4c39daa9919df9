"""Episode and action statistics (Maze's reward and action rows), the one place that computes them: as fixed-shape
reductions of running sums inside a jitted epoch (`episode_statistics`), and in numpy from per-episode values on the
host (`episode_table`: Python envs, evaluations, rollouts), under the same tags with the same definitions."""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.envs.episodes import EpisodeStats
from maze_jax.models.distributions import Categorical, Joint, leaf_actions, leaf_heads

DISCRETE_ACTIONS = "train_DiscreteActionEvents/action/"
CONTINUOUS_ACTIONS = "train_ContinuousActionEvents/action/"
REWARD = "BaseEnvEvents/reward/"


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
    tag = f"{prefix}_{REWARD}"
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
        **({} if stats.events is None else event_statistics(stats.events, prefix)),
    }


def episode_table(returns, lengths, prefix: str, per_seed: bool = False, ended=None) -> dict:
    """Reward statistics (Maze's tags under `prefix`) of per-episode returns and lengths, episodes on the last axis
    (seeds before it: one value per seed with `per_seed`, else all pooled). `ended` marks the episodes that count."""
    returns, lengths = np.asarray(returns, np.float64), np.asarray(lengths, np.float64)
    if ended is not None:
        returns, lengths = np.where(ended, returns, np.nan), np.where(ended, lengths, np.nan)
    if not per_seed:
        returns, lengths = returns.reshape(-1), lengths.reshape(-1)
    tag = f"{prefix}_{REWARD}"
    with warnings.catch_warnings():  # no episode ended: NaN statistics, as in training
        warnings.simplefilter("ignore", RuntimeWarning)
        return {tag + "mean": np.nanmean(returns, -1), tag + "std": np.nanstd(returns, -1),
                tag + "min": np.nanmin(returns, -1), tag + "max": np.nanmax(returns, -1),
                tag + "mean_step_count": np.nanmean(lengths, -1), tag + "median_step_count": np.nanmedian(lengths, -1),
                tag + "episode_count": (~np.isnan(returns)).sum(-1)}


def event_statistics(events, prefix: str) -> dict:
    """Maze's rows of an env's events and KPIs (`EventStats`): each event's `step_mean`, `step_max` and
    `mean_episode_total` under its own group (`InventoryEvents/pieces_in_inventory` gives `<prefix>_InventoryEvents/
    pieces_in_inventory/step_mean`), each KPI's mean, std, min and max over finished episodes under
    `<prefix>_BaseEnvEvents/kpi/<statistic>/<name>`. NaN where no step or episode counts."""
    nan = jnp.float32(jnp.nan)
    steps, episodes = events.steps.sum(), events.episodes.sum()
    per_episode = lambda total: jnp.where(episodes > 0, total / jnp.maximum(episodes, 1), nan)  # noqa: E731
    rows = {}
    for name in events.step_sum:
        group, _, event = name.rpartition("/")
        tag = f"{prefix}_{group or 'CustomEvents'}/{event}/"
        rows[tag + "step_mean"] = jnp.where(steps > 0, events.step_sum[name].sum() / jnp.maximum(steps, 1), nan)
        rows[tag + "step_max"] = jnp.where(steps > 0, events.step_max[name].max(), nan)
        rows[tag + "mean_episode_total"] = per_episode(events.episode_total[name].sum())
    for name in events.kpi_sum:
        tag = f"{prefix}_BaseEnvEvents/kpi/"
        mean = per_episode(events.kpi_sum[name].sum())
        rows[tag + f"mean/{name}"] = mean
        rows[tag + f"std/{name}"] = jnp.sqrt(jnp.maximum(per_episode(events.kpi_sq[name].sum()) - mean ** 2, 0.0))
        rows[tag + f"min/{name}"] = jnp.where(episodes > 0, events.kpi_min[name].min(), nan)
        rows[tag + f"max/{name}"] = jnp.where(episodes > 0, events.kpi_max[name].max(), nan)
    return rows


def action_statistics(dist, action, acting=None, head_sub_steps: dict | None = None, valid=None) -> dict:
    """Maze's action rows of a batch of raw actions (leading axes (T, B), as the distribution sampled them).

    Per head (a Dict or Tuple entry's MultiDiscrete or MultiBinary heads each apart, named `<entry>_<i>`), by tag
    `train_<Discrete|Continuous>ActionEvents/action/substep_<i>/<head>`: a discrete head's counts of each choice,
    shape (n,); a continuous head's `[count, sum]` of its env-space values (all dimensions).
    A structured env's head counts only where its sub-step acts: `acting` (T, B) holds the acting sub-step ids and
    `head_sub_steps` maps head names to sub-step ids. `valid` (T, B; None: all) leaves out the steps that are no
    transitions (`Trajectory.valid`). Counts add up over the updates of an epoch."""
    stacked = isinstance(dist, Joint) and dist.stacked
    entries = [entry for entry, head in dist.heads for _ in leaf_heads(head)] if isinstance(dist, Joint) else ["action"]
    rows = {}
    for (name, head), entry, head_action in zip(leaf_heads(dist), entries, leaf_actions(dist, action)):
        sub_step = (head_sub_steps or {}).get(entry, 0)
        weight = jnp.ones(head_action.shape[:2]) if acting is None else (acting == sub_step).astype(jnp.float32)
        if valid is not None:
            weight = weight * valid
        label = f"substep_{sub_step}/" + (f"action_{name}" if stacked else name)
        if isinstance(head, Categorical):
            hist = (jax.nn.one_hot(head_action, head.n) * weight[..., None]).reshape(-1, head.n).sum(0)
            rows[DISCRETE_ACTIONS + label] = hist
        else:
            values = head.to_env(head_action).reshape(weight.shape + (-1,))
            count = weight.sum() * values.shape[-1]
            rows[CONTINUOUS_ACTIONS + label] = jnp.stack([count, (values * weight[..., None]).sum()])
    return rows


def is_action_count(tag: str) -> bool:
    """Whether a metric is an action statistic: its counts add up over updates instead of averaging."""
    return tag.startswith((DISCRETE_ACTIONS, CONTINUOUS_ACTIONS))


def epoch_totals(update_metrics: dict) -> dict:
    """An epoch's statistics from its updates' (stacked on the first axis): action counts summed, others averaged."""
    return {k: (v.sum(0) if is_action_count(k) else jnp.mean(v, 0)) if jnp.ndim(v) else v
            for k, v in update_metrics.items()}
