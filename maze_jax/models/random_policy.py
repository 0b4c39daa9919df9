"""A uniformly random policy over an env's action space: the baseline of rollouts and the sampler of observations
for normalisation statistics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp

from maze_jax.models.masking import head_masks
from maze_jax.models.policy import action_distribution


@dataclass(frozen=True)
class RandomPolicy:
    """Uniformly random actions from the env's action space. With `masked` (`policy=masked_random_policy`, and the
    sampler of normalisation statistics), in an env with action masks or sub-steps, uniform over the allowed choices
    of the acting sub-step; without (`policy=random_policy`), masks are ignored. Same `act` as a `Policy`."""

    env_spec: Any
    masked: bool = True

    def act(self, params, obs, key, deterministic: bool):
        n = jax.tree.leaves(obs)[0].shape[0]
        dist = action_distribution(self.env_spec)
        masks = head_masks(dist, self.env_spec.env) if self.masked else None
        if masks is None:
            space = self.env_spec.env.action_space(self.env_spec.params)
            return jax.vmap(space.sample)(jax.random.split(key, n))
        logits = jax.vmap(masks)(jnp.zeros((n, dist.n_outputs)), obs)
        return dist.to_env(dist.sample(key, logits))
