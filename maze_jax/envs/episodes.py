"""Batched, auto-resetting rollouts that accumulate statistics of finished episodes inside the scan.

Statistics are kept per env as running sums (plus a histogram of episode lengths for the median), so a rollout
of any length returns a few fixed-size arrays instead of (steps, envs) records.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from maze_jax.devices import shard_batch


class EpisodeStats(NamedTuple):
    """Finished episodes so far, per env (`length_hist` is shared: index = episode length)."""

    count: jax.Array
    return_sum: jax.Array
    return_sq_sum: jax.Array
    return_min: jax.Array
    return_max: jax.Array
    length_sum: jax.Array
    first_return: jax.Array
    first_length: jax.Array
    length_hist: jax.Array

    @classmethod
    def zeros(cls, n_envs: int, max_length: int) -> EpisodeStats:
        f, i = jnp.zeros(n_envs, jnp.float32), jnp.zeros(n_envs, jnp.int32)
        return cls(i, f, f, f + jnp.inf, f - jnp.inf, i, f, i, jnp.zeros(max_length + 1, jnp.int32))

    def add(self, done: jax.Array, ep_return: jax.Array, ep_length: jax.Array) -> EpisodeStats:
        """Counts the episodes that ended this step (`done`) with their returns and lengths."""
        first = done & (self.count == 0)
        return EpisodeStats(
            self.count + done,
            self.return_sum + jnp.where(done, ep_return, 0.0),
            self.return_sq_sum + jnp.where(done, ep_return**2, 0.0),
            jnp.where(done, jnp.minimum(self.return_min, ep_return), self.return_min),
            jnp.where(done, jnp.maximum(self.return_max, ep_return), self.return_max),
            self.length_sum + jnp.where(done, ep_length, 0),
            jnp.where(first, ep_return, self.first_return),
            jnp.where(first, ep_length, self.first_length),
            self.length_hist.at[ep_length].add(done.astype(jnp.int32), mode="drop"),
        )

    def first_episodes(self) -> EpisodeStats:
        """Only each env's first finished episode (evaluation counts one episode per env)."""
        ended = self.count > 0
        ret, length = jnp.where(ended, self.first_return, 0.0), jnp.where(ended, self.first_length, 0)
        hist = jnp.zeros_like(self.length_hist).at[length].add(ended.astype(jnp.int32), mode="drop")
        return EpisodeStats(ended.astype(jnp.int32), ret, ret**2, jnp.where(ended, ret, jnp.inf),
                            jnp.where(ended, ret, -jnp.inf), length, ret, length, hist)

    def mean_return_per_env(self) -> jax.Array:
        """Mean return of each env's finished episodes (0 where none finished)."""
        return self.return_sum / jnp.maximum(self.count, 1)


def reset_batch(env, env_params, key: jax.Array, n_envs: int):
    """Resets `n_envs` environments with independent keys."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n_envs), env_params)


def step_batch(env, env_params, keys: jax.Array, states, actions):
    """Steps a batch of environments, one key each (gymnax auto-resets each one whose episode ended)."""
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, env_params)


class Trajectory(NamedTuple):
    """Every step of a recorded rollout, time-major: (steps, envs, ...). Envs auto-reset, so a row may hold
    more than one episode; `EpisodeStats.first_length` says where each env's first one ends."""

    observation: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array


def play_episodes(env, env_params, act: Callable[[Any, jax.Array], jax.Array], key: jax.Array,
                  n_envs: int, n_steps: int, record: bool = False, mesh=None):
    """Runs `n_envs` fresh envs for `n_steps` steps under `act(obs_batch, key) -> actions`, one `lax.scan`.

    Returns the EpisodeStats, or (EpisodeStats, Trajectory) with `record` (the same episodes: same keys).
    With a `mesh`, the envs are split across its devices."""
    key_reset, key_act, key_env = jax.random.split(key, 3)
    obs, states = shard_batch(reset_batch(env, env_params, key_reset, n_envs), mesh)
    # all keys drawn up front in one vectorised call: cheaper than splitting inside the step loop
    act_keys = jax.random.split(key_act, n_steps)
    env_keys = jax.random.split(key_env, n_steps * n_envs).reshape((n_steps, n_envs))
    zeros = jnp.zeros(n_envs, jnp.float32)

    def one_step(carry, keys):
        obs, states, ep_return, ep_length, stats = carry
        key_act, keys_env = keys
        action = act(obs, key_act)
        next_obs, states, reward, terminated, truncated, _ = step_batch(env, env_params, keys_env, states, action)
        done = terminated | truncated
        ep_return, ep_length = ep_return + reward, ep_length + 1
        stats = stats.add(done, ep_return, ep_length)
        step = Trajectory(obs, action, reward, terminated, truncated) if record else None
        envs = shard_batch((next_obs, states, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length)), mesh)
        return (*envs, stats), step

    carry = (obs, states, zeros, zeros.astype(jnp.int32), EpisodeStats.zeros(n_envs, n_steps))
    carry, trajectory = jax.lax.scan(one_step, carry, (act_keys, env_keys))
    return (carry[-1], trajectory) if record else carry[-1]
