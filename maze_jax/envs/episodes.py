"""Batched, auto-resetting rollouts that record finished episodes as fixed-shape (steps, envs) arrays."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp


class EpisodeRecord(NamedTuple):
    """Per step and env: `done` marks the step an episode ended, with that episode's return and length."""

    done: jax.Array
    returns: jax.Array
    lengths: jax.Array

    def first_episodes(self) -> EpisodeRecord:
        """Keeps only each env's first finished episode (evaluation counts one episode per env)."""
        first = self.done & (jnp.cumsum(self.done, axis=0) == 1)
        return self._replace(done=first)

    def first_episode_per_env(self) -> EpisodeRecord:
        """Each env's first finished episode as a (1, envs) record: small enough to leave the device cheaply."""
        first = self.first_episodes()
        pick = lambda x: jnp.where(first.done, x, 0).sum(axis=0, keepdims=True)
        return EpisodeRecord(first.done.any(axis=0, keepdims=True), pick(self.returns), pick(self.lengths))

    def mean_return_per_env(self) -> jax.Array:
        """Mean return of each env's finished episodes (0 where none finished)."""
        count = self.done.sum(axis=0)
        return jnp.where(self.done, self.returns, 0.0).sum(axis=0) / jnp.maximum(count, 1)


def reset_batch(env, env_params, key: jax.Array, n_envs: int):
    """Resets `n_envs` environments with independent keys."""
    return jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(key, n_envs), env_params)


def step_batch(env, env_params, key: jax.Array, states, actions):
    """Steps a batch of environments (gymnax auto-resets each one whose episode ended)."""
    keys = jax.random.split(key, actions.shape[0])
    return jax.vmap(env.step, in_axes=(0, 0, 0, None))(keys, states, actions, env_params)


def play_episodes(env, env_params, act: Callable[[Any, jax.Array], jax.Array], key: jax.Array,
                  n_envs: int, n_steps: int) -> EpisodeRecord:
    """Runs `n_envs` fresh envs for `n_steps` steps under `act(obs_batch, key) -> actions`, one `lax.scan`."""
    key_reset, key_steps = jax.random.split(key)
    obs, states = reset_batch(env, env_params, key_reset, n_envs)
    zeros = jnp.zeros(n_envs, jnp.float32)

    def one_step(carry, step_key):
        obs, states, ep_return, ep_length = carry
        key_act, key_env = jax.random.split(step_key)
        obs, states, reward, terminated, truncated, _ = step_batch(env, env_params, key_env, states, act(obs, key_act))
        done = terminated | truncated
        ep_return = ep_return + reward
        ep_length = ep_length + 1
        record = EpisodeRecord(done, ep_return, ep_length.astype(jnp.int32))
        carry = (obs, states, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length))
        return carry, record

    _, record = jax.lax.scan(one_step, (obs, states, zeros, zeros.astype(jnp.int32)),
                             jax.random.split(key_steps, n_steps))
    return record
