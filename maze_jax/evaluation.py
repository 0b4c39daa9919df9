"""Evaluation rollouts: one episode per env, all envs batched, deterministic by default (Maze's rollout evaluator)."""

from __future__ import annotations

import jax

from maze_jax.envs import EnvSpec, EpisodeStats, play_episodes
from maze_jax.models import Policy


def evaluate(policy: Policy, params, env_spec: EnvSpec, key: jax.Array, n_episodes: int,
             deterministic: bool = True) -> EpisodeStats:
    """Plays `n_episodes` episodes in parallel (pure, jittable); the statistics count each env's first episode."""
    act = lambda obs, k: policy.act(params, obs, k, deterministic)
    stats = play_episodes(env_spec.env, env_spec.params, act, key, n_episodes, env_spec.horizon)
    return stats.first_episodes()
