"""Recurrent cells (GRU, LSTM) split in two phases, so that a replay of many steps runs the costly half on every
step at once:

- `project(x) -> projected`: the input's share of every gate, one matmul (x (..., in)), returned as one array
  (..., units) per gate; it does not depend on the memory, so a replay computes it for all steps in one batched
  call;
- `step(memory, projected) -> (memory, output)`: what needs the previous memory, one matmul of the memory by the
  gates' recurrent kernels, concatenated.

`cell(memory, x)` is `step(memory, project(x))`. The gates are the standard ones (as in flax's `GRUCell` and
`OptimizedLSTMCell`, and PyTorch's `GRU` and `LSTM`), with the same initialisation: LeCun-normal input kernels,
an orthogonal recurrent kernel per gate, zero biases. One matmul per phase instead of one per gate matters where
the batch is small, as in acting. The gates' inputs are separate arrays because XLA's CPU code for a replay's
loop body, which reads one step of them, vectorises the gates' sigmoid and tanh only when each gate's input is an
array of its own, not a slice of a shared one (measured on a 2-core x86 CPU, a GRU of 64 on 32 sequences: 40 us per
step with one array sliced into gates, 14 us with an array per gate)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from maze_jax.models.init import orthogonal


def per_gate_orthogonal(n_gates: int):
    """An initialiser of a (units, n_gates * units) recurrent kernel: an orthogonal (units, units) block per gate
    (`models.init.orthogonal`: under vmap, one unbatched QR after another)."""
    def init(key, shape, dtype=jnp.float32):
        units = shape[0]
        blocks = [orthogonal()(k, (units, units), dtype) for k in jax.random.split(key, n_gates)]
        return jnp.concatenate(blocks, axis=-1)
    return init


class GRU(nn.Module):
    """A GRU of `units`: memory (..., units), the output is the new memory. Gates r (reset), z (update), n
    (candidate): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h."""

    units: int

    def setup(self):
        self.input = nn.Dense(3 * self.units)
        self.recurrent = nn.Dense(3 * self.units, use_bias=False, kernel_init=per_gate_orthogonal(3))
        self.candidate_bias = self.param("candidate_bias", nn.initializers.zeros, (self.units,))

    def project(self, x):
        return tuple(jnp.split(self.input(x), 3, axis=-1))

    def step(self, memory, projected):
        x_r, x_z, x_n = projected
        h_r, h_z, h_n = jnp.split(self.recurrent(memory), 3, axis=-1)
        r, z = nn.sigmoid(x_r + h_r), nn.sigmoid(x_z + h_z)
        n = jnp.tanh(x_n + r * (h_n + self.candidate_bias))
        memory = (1.0 - z) * n + z * memory
        return memory, memory

    def __call__(self, memory, x):
        return self.step(memory, self.project(x))


class LSTM(nn.Module):
    """An LSTM of `units`: memory (cell, hidden), each (..., units); the output is the new hidden state. Gates i
    (input), f (forget), g (candidate), o (output): c' = f * c + i * g, h' = o * tanh(c')."""

    units: int

    def setup(self):
        self.input = nn.Dense(4 * self.units)
        self.recurrent = nn.Dense(4 * self.units, use_bias=False, kernel_init=per_gate_orthogonal(4))

    def project(self, x):
        return tuple(jnp.split(self.input(x), 4, axis=-1))

    def step(self, memory, projected):
        cell, hidden = memory
        i, f, g, o = (x + h for x, h in zip(projected, jnp.split(self.recurrent(hidden), 4, axis=-1)))
        cell = nn.sigmoid(f) * cell + nn.sigmoid(i) * jnp.tanh(g)
        hidden = nn.sigmoid(o) * jnp.tanh(cell)
        return (cell, hidden), hidden

    def __call__(self, memory, x):
        return self.step(memory, self.project(x))
