"""The structured-environment protocol: an environment that advances in sub-steps, each acted on by its own
policy network, plus action masks taken from the observation. A small protocol on a gymnax-style env:

- `env.sub_steps`: a tuple of `SubStep(name, observation_keys, action_keys)`, one per sub-step, in order.
  The observation is a dict holding every sub-step's keys plus `ACTOR_ID` (int32 scalar: which sub-step acts
  now); the action is a dict with every sub-step's keys, of which the env reads the acting sub-step's.
  Rewards, `terminated`, `truncated` and the time limit work per call of `step`, i.e. per sub-step.
- `env.action_masks`: optional, `{action_key: observation_key}`; the observation entry is a bool vector
  marking the allowed choices of that (Discrete) action head.

An env without `sub_steps` is one sub-step that sees the whole observation and chooses the whole action.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

ACTOR_ID = "actor_id"


class SubStep(NamedTuple):
    """One sub-step of a structured env: its name, the observation keys its network sees and the action keys it sets."""

    name: str
    observation_keys: tuple
    action_keys: tuple


def sub_steps(env) -> tuple:
    """The env's sub-steps; `()` for an ordinary (flat) env."""
    return tuple(getattr(env, "sub_steps", ()) or ())


def action_masks(env) -> dict:
    """`{action_key: observation_key}` of the env's action masks (empty if it has none)."""
    return dict(getattr(env, "action_masks", {}) or {})


def masked_logits(logits: jax.Array, allowed: jax.Array) -> jax.Array:
    """Logits with disallowed choices set to the dtype's minimum: never sampled, never the mode, probability 0
    (exactly 0 after softmax), no contribution to the entropy and no gradient."""
    return jnp.where(allowed, logits, jnp.finfo(logits.dtype).min)
