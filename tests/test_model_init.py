"""The networks' orthogonal initialiser: flax's values, drawn one matrix at a time under vmap."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from maze_jax.models.init import orthogonal


def test_orthogonal_gives_flax_values_and_orthogonal_columns():
    key = jax.random.key(3)
    ours = orthogonal(2.0)(key, (6, 4))
    np.testing.assert_array_equal(ours, nn.initializers.orthogonal(2.0)(key, (6, 4)))
    np.testing.assert_allclose(ours.T @ ours, 4.0 * np.eye(4), atol=1e-5)


def test_orthogonal_under_vmap_is_a_loop_of_unbatched_qrs_with_the_same_values():
    keys = jax.random.split(jax.random.key(0), 3)
    init = orthogonal(1.0)
    batched = jax.jit(jax.vmap(lambda k: init(k, (5, 5))))
    np.testing.assert_array_equal(batched(keys), jnp.stack([init(k, (5, 5)) for k in keys]))
    # a batched QR splits its batch over XLA's CPU pool and can deadlock it when two run at once
    qr_calls = [line for line in batched.lower(keys).as_text().splitlines() if "lapack_sgeqrf" in line]
    assert qr_calls and all('num_batch_dims = "0"' in line for line in qr_calls)
