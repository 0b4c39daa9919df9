"""Maze's `flatten_concat` model: every observation flattened and concatenated, then an MLP."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError
from maze_jax.models.init import orthogonal

_NON_LINS = {"tanh": nn.tanh, "relu": nn.relu, "elu": nn.elu, "gelu": nn.gelu, "selu": nn.selu,
             "sigmoid": nn.sigmoid, "silu": nn.silu, "leakyrelu": nn.leaky_relu, "softplus": nn.softplus}


def activation(name: str):
    """A non-linearity by Maze's name (`Tanh`, `torch.nn.ReLU`, ...) or flax's (`tanh`, `relu`, ...)."""
    key = str(name).rsplit(".", 1)[-1].lower()
    if key not in _NON_LINS:
        raise ConfigError(f"model.non_lin={name!r} is unknown. Valid: {', '.join(sorted(_NON_LINS))}")
    return _NON_LINS[key]


def flatten_concat(obs) -> jax.Array:
    """One observation (array or dict of arrays, unbatched) as a flat float vector; dict keys in sorted order."""
    leaves = jax.tree.leaves(obs)
    return jnp.concatenate([jnp.ravel(x).astype(jnp.float32) for x in leaves])


class FlattenConcatPolicy(nn.Module):
    """MLP from the flattened observation to `n_outputs` distribution parameters (one unbatched observation).

    Orthogonal initialisation with a small last layer, so the initial policy is close to uniform.
    """

    n_outputs: int
    hidden_units: Sequence[int] = (256, 256)
    non_lin: str = "Tanh"
    output_scale: float = 0.01

    @nn.compact
    def __call__(self, obs):
        x = flatten_concat(obs)
        act = activation(self.non_lin)
        for units in self.hidden_units:
            x = act(nn.Dense(units, kernel_init=orthogonal(np.sqrt(2)))(x))
        return nn.Dense(self.n_outputs, kernel_init=orthogonal(self.output_scale))(x)
