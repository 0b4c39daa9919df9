"""Evaluation rollouts: one episode per env, all envs batched, deterministic by default (Maze's rollout evaluator)."""

from __future__ import annotations

import jax

from maze_jax.envs import EnvSpec, play_episodes
from maze_jax.models import Policy
from maze_jax.models.recurrent import act_with_memory, policy_memory


def evaluate(policy: Policy, params, env_spec: EnvSpec, key: jax.Array, n_episodes: int,
             deterministic: bool = True, record: bool = False):
    """Plays `n_episodes` episodes in parallel (pure, jittable), until each env has ended its first episode (at
    most the env's time limit); the statistics count each env's first episode.

    With `record`, returns (EpisodeStats, Recording) of the very same episodes."""
    act = lambda obs, k, memory: act_with_memory(policy, params, obs, k, deterministic, memory)  # noqa: E731
    played = play_episodes(env_spec.env, env_spec.params, act, key, n_episodes, env_spec.horizon, record,
                           memory=policy_memory(policy, n_episodes), until_ended=True)
    return (played[0].first_episodes(), played[1]) if record else played.first_episodes()
