"""A custom flax model: maze_jax gives it `n_outputs` (the logits the action space needs, or 1 for a critic)."""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


class TargetNet(nn.Module):
    n_outputs: int
    hidden_units: Sequence[int] = (32,)

    @nn.compact
    def __call__(self, obs):  # one observation (maze_jax vmaps over batches)
        x = jnp.concatenate([obs["target"], obs["time_left"]])
        for units in self.hidden_units:
            x = nn.relu(nn.Dense(units)(x))
        return nn.Dense(self.n_outputs)(x)
