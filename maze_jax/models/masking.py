"""Applies an env's action masks and sub-step structure to a policy's distribution outputs (one observation)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from maze_jax.config import ConfigError
from maze_jax.envs.structured import ACTOR_ID, action_masks, masked_logits, sub_steps
from maze_jax.models.distributions import Categorical, Joint


@dataclass(frozen=True)
class HeadMasks:
    """Per masked Categorical head: its output slice, the observation key of its mask (or None) and the index of
    the sub-step it belongs to (or None in a flat env).

    A head of a sub-step that is not acting becomes a point mass on choice 0: its log-probability and entropy
    are 0 and it gets no gradient, so only the acting sub-step's heads count in the losses."""

    heads: tuple  # ((start, stop, mask_key | None, sub_step | None), ...)

    def __call__(self, out, obs):
        for start, stop, mask_key, sub_step in self.heads:
            allowed = obs[mask_key] if mask_key else jnp.ones(stop - start, bool)
            if sub_step is not None:
                allowed = jnp.where(obs[ACTOR_ID] == sub_step, allowed, jnp.arange(stop - start) == 0)
            out = out.at[..., start:stop].set(masked_logits(out[..., start:stop], allowed))
        return out


def head_masks(dist, env) -> HeadMasks | None:
    """The HeadMasks an env needs (None when it has neither masks nor sub-steps)."""
    masks, steps = action_masks(env), sub_steps(env)
    if not masks and not steps:
        return None
    heads = dist.heads if isinstance(dist, Joint) else (("action", dist),)
    slices = dist.slices() if isinstance(dist, Joint) else [(0, dist.n_outputs)]
    owner = {key: i for i, step in enumerate(steps) for key in step.action_keys}
    unknown = set(masks) - {name for name, _ in heads}
    if unknown:
        raise ConfigError(f"env.action_masks names action keys {sorted(unknown)} that the action space lacks")
    entries = []
    for (name, head), (start, stop) in zip(heads, slices):
        if name not in masks and name not in owner:
            continue
        if not isinstance(head, Categorical):
            raise ConfigError(f"action {name!r}: masks and sub-steps need Discrete actions, not {head}")
        entries.append((start, stop, masks.get(name), owner.get(name)))
    return HeadMasks(tuple(entries))
