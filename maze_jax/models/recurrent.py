"""Maze's `vector_obs_rnn` model: the flattened observation through a dense feature block, a recurrent cell (GRU or
LSTM) that carries a memory from step to step, then a dense output layer.

A recurrent network is called on one observation and the memory its env had after the previous step:
`network(obs, memory) -> (outputs, memory)`, and `initial_memory()` is one env's memory at an episode's start
(zeros). Collectors keep each env's memory beside its env state and set it to zeros when the env's episode ends
(`envs.episodes.step_envs`, the host collector), so a memory never crosses from one episode into the next.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.config import ConfigError
from maze_jax.envs.episodes import reset_memory
from maze_jax.models.cells import GRU, LSTM
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
    `FlattenConcatPolicy`.

    Besides the whole step (`__call__`), its phases are methods, so that a replay of many steps
    (`unroll_networks`) runs the dense layers and the cell's input matmul on every step at once and only the cell's
    recurrent half step by step: `gate_inputs(obs) -> projected features`, `recur(memory, projected) -> (memory,
    cell output)`, `decode(cell output)` (`models.cells`)."""

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

    def setup(self):
        self.setup_features()
        cell = LSTM if self.cell == "lstm" else GRU
        self.memory = cell(int(self.memory_units))
        self.output = nn.Dense(self.n_outputs, kernel_init=orthogonal(self.output_scale))

    def setup_features(self):
        """The layers `encode` runs before the cell (a subclass with another feature block replaces both)."""
        self.hidden = [nn.Dense(units, kernel_init=orthogonal(np.sqrt(2))) for units in self.hidden_units]

    def encode(self, obs):
        """The dense block's features of one observation."""
        x = flatten_concat(obs)
        for layer in self.hidden:
            x = activation(self.non_lin)(layer(x))
        return x

    def gate_inputs(self, obs):
        """One observation's share of the cell's gates: its features through the cell's input matmul."""
        return self.memory.project(self.encode(obs))

    def recur(self, memory, gate_inputs):
        """The cell's step from `memory` on one step's `gate_inputs`: (memory after it, cell output)."""
        return self.memory.step(memory, gate_inputs)

    def decode(self, cell_output):
        return self.output(cell_output)

    def __call__(self, obs, memory):
        memory, x = self.recur(memory, self.gate_inputs(obs))
        return self.decode(x), memory


def unroll_networks(networks: dict, params: dict, obs, starts, memory: dict) -> tuple[dict, dict]:
    """Networks (by name, with their `params` and `memory` by the same names) on time-major observations (T, B,
    ...), each env's memory starting from its `memory` (B, ...) and set to zeros where `starts` (T, B) marks an
    episode's first step: ({name: outputs (T, B, ...)}, {name: memory after each step (T, B, ...), before any such
    reset}). A recurrent network's dense layers and its cell's input matmul run on every step at once; only the
    cell's recurrent half runs step by step, all networks' cells in one scan. A network without a memory runs on
    every step at once, with `()` as memory."""
    horizon, n = starts.shape
    samples = lambda x: x.reshape((horizon * n,) + x.shape[2:])  # noqa: E731
    steps = lambda x: x.reshape((horizon, n) + x.shape[1:])  # noqa: E731
    flat_obs = jax.tree.map(samples, obs)
    recurrent = [name for name, network in networks.items() if is_recurrent(network)]
    outputs = {name: steps(jax.vmap(functools.partial(networks[name].apply, params[name]))(flat_obs))
               for name in networks if name not in recurrent}
    features = {name: jax.tree.map(steps, jax.vmap(lambda o, name=name: networks[name].apply(
        params[name], o, method="gate_inputs"))(flat_obs)) for name in recurrent}

    def one_step(memories, inputs):
        x, start = inputs
        after, cell_out = {}, {}
        for name in recurrent:
            recur = lambda m, f, name=name: networks[name].apply(params[name], m, f, method="recur")  # noqa: E731
            after[name], cell_out[name] = jax.vmap(recur)(reset_memory(memories[name], start), x[name])
        return after, (cell_out, after)

    _, (cell_out, memories) = jax.lax.scan(one_step, {name: memory[name] for name in recurrent}, (features, starts))
    for name in recurrent:
        decode = lambda y, name=name: networks[name].apply(params[name], y, method="decode")  # noqa: E731
        outputs[name] = steps(jax.vmap(decode)(samples(cell_out[name])))
    return outputs, {name: memories.get(name, ()) for name in networks}


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
