"""Maze's `vector_obs_rnn` model: the flattened observation through a dense feature block, a recurrent cell (GRU or
LSTM) that carries a memory from step to step, then a dense output layer.

A recurrent network is called on one observation and the memory its env had after the previous step:
`network(obs, memory) -> (outputs, memory)`, and `initial_memory()` is one env's memory at an episode's start
(zeros). Collectors keep each env's memory beside its env state and set it to zeros when the env's episode ends
(`envs.episodes.step_envs`, the host collector), so a memory never crosses from one episode into the next.
"""

from __future__ import annotations

from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError
from maze_jax.models.init import orthogonal
from maze_jax.models.mlp import activation, flatten_concat

CELLS = ("gru", "lstm")


def is_recurrent(network) -> bool:
    """Whether a network carries a memory between steps (its call takes and returns one)."""
    return bool(getattr(network, "recurrent", False))


def batch_memory(memory, n: int):
    """One env's memory repeated for `n` envs (a new leading axis)."""
    return jax.tree.map(lambda m: jnp.broadcast_to(m, (n,) + m.shape), memory)


class RecurrentPolicy(nn.Module):
    """Dense `hidden_units` (non-linearity `non_lin`), a `cell` (gru or lstm) of `memory_units`, then a dense layer
    to `n_outputs` distribution parameters; one unbatched observation and its env's memory ((memory_units,) for a
    GRU, a (cell, hidden) pair for an LSTM). Orthogonal initialisation with a small last layer, as
    `FlattenConcatPolicy`."""

    recurrent: ClassVar[bool] = True

    n_outputs: int
    hidden_units: Sequence[int] = (128,)
    memory_units: int = 64
    cell: str = "gru"
    non_lin: str = "Tanh"
    output_scale: float = 0.01

    def initial_memory(self) -> Any:
        """One env's memory at an episode's start."""
        if self.cell not in CELLS:
            raise ConfigError(f"model.cell={self.cell!r} is unknown. Valid: {', '.join(CELLS)}")
        zeros = jnp.zeros(int(self.memory_units), jnp.float32)
        return (zeros, zeros) if self.cell == "lstm" else zeros

    @nn.compact
    def __call__(self, obs, memory):
        x = flatten_concat(obs)
        act = activation(self.non_lin)
        for i, units in enumerate(self.hidden_units):
            x = act(nn.Dense(units, kernel_init=orthogonal(np.sqrt(2)), name=f"hidden_{i}")(x))
        cell = nn.OptimizedLSTMCell if self.cell == "lstm" else nn.GRUCell
        memory, x = cell(int(self.memory_units), name="memory")(memory, x)
        out = nn.Dense(self.n_outputs, kernel_init=orthogonal(self.output_scale), name="output")(x)
        return out, memory


def policy_memory(policy, n: int):
    """The memory of `n` envs at their episodes' start of any policy: a recurrent `Policy`'s, else `()` (a
    feed-forward policy, a random policy, a heuristic: anything with `act(params, obs, key, deterministic)`)."""
    return policy.initial_memory(n) if is_recurrent(policy) else ()


def act_with_memory(policy, params, obs, key, deterministic: bool, memory):
    """Any policy's actions for a batch of observations and their envs' memories: (actions, memories after them)."""
    if is_recurrent(policy):
        return policy.act_with_memory(params, obs, key, deterministic, memory)
    return policy.act(params, obs, key, deterministic), memory


def call_network(network, params, obs, memory):
    """Any network on one observation and its env's memory: (outputs, memory after it); a network without a
    memory passes `memory` through."""
    if is_recurrent(network):
        return network.apply(params, obs, memory)
    return network.apply(params, obs), memory
