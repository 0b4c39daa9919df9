"""The networks of the masked structured cutting env (`model=tutorial_cutting_2d_struct_masked`).

Sub-step `select_piece` scores every inventory slot against the order: both are embedded by small MLPs and each
slot's logit is the dot product of its embedding with the order's (masks are applied by the policy).
Sub-step `cut` embeds the selected and the ordered piece and outputs the rotation and cut-order logits."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from maze_jax.models.init import orthogonal
from maze_jax.models.mlp import activation


class _Embed(nn.Module):
    hidden_units: Sequence[int]
    non_lin: str

    @nn.compact
    def __call__(self, x):
        for units in self.hidden_units:
            x = activation(self.non_lin)(nn.Dense(units, kernel_init=orthogonal(np.sqrt(2)))(x))
        return x


class PieceSelectionNet(nn.Module):
    """`n_outputs` logits, one per inventory slot: embedding(slot) . embedding(order, inventory size)."""

    n_outputs: int
    hidden_units: Sequence[int] = (32, 32)
    non_lin: str = "Tanh"

    @nn.compact
    def __call__(self, obs):
        pieces = _Embed(self.hidden_units, self.non_lin)(obs["inventory"])  # (slots, units)
        order = _Embed(self.hidden_units, self.non_lin)(
            jnp.concatenate([obs["ordered_piece"], obs["inventory_size"]]))
        order = nn.Dense(pieces.shape[-1], kernel_init=orthogonal(0.1))(order)
        return pieces @ order


class CuttingNet(nn.Module):
    """Rotation and cut-order logits (`n_outputs` = 4) from the selected and the ordered piece."""

    n_outputs: int
    hidden_units: Sequence[int] = (32, 32)
    non_lin: str = "Tanh"

    @nn.compact
    def __call__(self, obs):
        x = _Embed(self.hidden_units, self.non_lin)(jnp.concatenate([obs["selected_piece"], obs["ordered_piece"]]))
        return nn.Dense(self.n_outputs, kernel_init=orthogonal(0.01))(x)
