"""Evaluation rollouts: one episode per env, all envs batched, deterministic by default (Maze's rollout evaluator)."""

from __future__ import annotations

import jax

from maze_jax.envs import EnvSpec, play_episodes
from maze_jax.models import Policy


def evaluate(policy: Policy, params, env_spec: EnvSpec, key: jax.Array, n_episodes: int,
             deterministic: bool = True, record: bool = False):
    """Plays `n_episodes` episodes in parallel (pure, jittable); the statistics count each env's first episode.

    With `record`, returns (EpisodeStats, Trajectory) of the very same episodes."""
    act = lambda obs, k, memory: policy.act_with_memory(params, obs, k, deterministic, memory)  # noqa: E731
    played = play_episodes(env_spec.env, env_spec.params, act, key, n_episodes, env_spec.horizon, record,
                           memory=policy.initial_memory(n_episodes))
    return (played[0].first_episodes(), played[1]) if record else played.first_episodes()
