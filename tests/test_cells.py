"""`models.cells`: the GRU and LSTM compute the standard gates (those of flax's `GRUCell` and `LSTMCell` given the
same weights), their two phases compose to the whole step, and their recurrent kernels start orthogonal per gate."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.models.cells import GRU, LSTM

UNITS, N_IN, BATCH = 8, 5, 4


def inputs(seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 3)
    return (jax.random.normal(keys[0], (BATCH, N_IN)), jax.random.normal(keys[1], (BATCH, UNITS)),
            jax.random.normal(keys[2], (BATCH, UNITS)))


def random_params(module, *example):
    """Parameters with every leaf random (biases too), so that no gate's term can hide behind a zero."""
    params = module.init(jax.random.key(1), *example)
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(2), len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, x.shape) * 0.5 for k, x in zip(keys, leaves)])


def test_the_gru_computes_the_standard_gates():
    x, h, _ = inputs()
    ours = random_params(GRU(UNITS), h, x)["params"]
    kernel_i = jnp.split(ours["input"]["kernel"], 3, axis=-1)
    bias_i = jnp.split(ours["input"]["bias"], 3)
    kernel_h = jnp.split(ours["recurrent"]["kernel"], 3, axis=-1)
    reference = {"ir": {"kernel": kernel_i[0], "bias": bias_i[0]}, "iz": {"kernel": kernel_i[1], "bias": bias_i[1]},
                 "in": {"kernel": kernel_i[2], "bias": bias_i[2]}, "hr": {"kernel": kernel_h[0]},
                 "hz": {"kernel": kernel_h[1]}, "hn": {"kernel": kernel_h[2], "bias": ours["candidate_bias"]}}
    want_memory, want_out = nn.GRUCell(UNITS).apply({"params": reference}, h, x)
    memory, out = GRU(UNITS).apply({"params": ours}, h, x)
    np.testing.assert_allclose(memory, want_memory, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out, want_out, rtol=1e-5, atol=1e-6)


def test_the_lstm_computes_the_standard_gates():
    x, c, h = inputs()
    ours = random_params(LSTM(UNITS), (c, h), x)["params"]
    kernel_i = jnp.split(ours["input"]["kernel"], 4, axis=-1)
    bias = jnp.split(ours["input"]["bias"], 4)
    kernel_h = jnp.split(ours["recurrent"]["kernel"], 4, axis=-1)
    reference = {}
    for k, gate in enumerate("ifgo"):  # flax's LSTMCell: the bias sits on the recurrent half
        reference[f"i{gate}"] = {"kernel": kernel_i[k]}
        reference[f"h{gate}"] = {"kernel": kernel_h[k], "bias": bias[k]}
    (want_c, want_h), want_out = nn.LSTMCell(UNITS).apply({"params": reference}, (c, h), x)
    (got_c, got_h), out = LSTM(UNITS).apply({"params": ours}, (c, h), x)
    for got, want in ((got_c, want_c), (got_h, want_h), (out, want_out)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell, n_gates", [(GRU, 3), (LSTM, 4)])
def test_the_two_phases_compose_to_the_step_and_the_recurrent_kernel_starts_orthogonal_per_gate(cell, n_gates):
    x, c, h = inputs(3)
    memory = h if cell is GRU else (c, h)
    module = cell(UNITS)
    params = module.init(jax.random.key(0), memory, x)
    projected = module.apply(params, x, method="project")
    assert len(projected) == n_gates and all(p.shape == (BATCH, UNITS) for p in projected)
    whole = module.apply(params, memory, x)
    phased = module.apply(params, memory, projected, method="step")
    for got, want in zip(jax.tree.leaves(phased), jax.tree.leaves(whole)):
        np.testing.assert_array_equal(got, want)
    kernel = params["params"]["recurrent"]["kernel"]
    assert kernel.shape == (UNITS, n_gates * UNITS)
    for block in jnp.split(kernel, n_gates, axis=-1):
        np.testing.assert_allclose(block.T @ block, np.eye(UNITS), atol=1e-5)
    assert not np.allclose(*jnp.split(kernel, n_gates, axis=-1)[:2])  # each gate draws its own block


@pytest.mark.parametrize("cell", [GRU, LSTM])
def test_cells_initialised_under_vmap_draw_their_recurrent_blocks_with_unbatched_qrs(cell):
    # a batched QR splits its batch over XLA's CPU pool and can deadlock it (`models.init`)
    x = jnp.zeros(N_IN)
    memory = jnp.zeros(UNITS) if cell is GRU else (jnp.zeros(UNITS), jnp.zeros(UNITS))
    init = jax.jit(jax.vmap(lambda k: cell(UNITS).init(k, memory, x)))
    qr_calls = [line for line in init.lower(jax.random.split(jax.random.key(0), 3)).as_text().splitlines()
                if "lapack_sgeqrf" in line]
    assert qr_calls and all('num_batch_dims = "0"' in line for line in qr_calls)
