"""Weight initialisers shared by the networks.

`orthogonal` is flax's orthogonal initialiser, with one change: under `jax.vmap` (seeds, a grid, a population)
it draws its matrices one after another instead of as one batched QR. jaxlib's batched LAPACK QR on the CPU
splits the batch over XLA's intra-op thread pool and blocks a pool thread while it waits. When XLA's scheduler runs
two such QRs at once (two layers of a network, initialised under `jit(vmap(train))`), each holds one thread of a
2-thread pool and waits for work queued behind the other: the program never returns. Unbatched QRs never wait on
the pool, so a sequential map avoids the deadlock whatever XLA flags the process started with. The values are the
same as the batched ones (each QR factors the same matrix); the cost is a loop of a few tiny QRs at start-up.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn


def orthogonal(scale: float = 1.0):
    """An orthogonal initialiser `(key, shape, dtype) -> array` of gain `scale` whose vmap is a sequential map."""
    flax_init = nn.initializers.orthogonal(scale)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.custom_batching.sequential_vmap(lambda k: flax_init(k, shape, dtype))(key)

    return init
