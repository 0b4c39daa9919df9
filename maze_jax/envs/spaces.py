"""Action spaces gymnax lacks, in its style (jittable `sample` and `contains`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


class MultiDiscrete:
    """Several independent discrete choices, choice i in [0, nvec[i]); an action is an int32 vector."""

    def __init__(self, nvec):
        self.nvec = tuple(int(n) for n in nvec)
        self.shape = (len(self.nvec),)
        self.dtype = jnp.int32

    def sample(self, key: jax.Array) -> jax.Array:
        return jax.random.randint(key, self.shape, 0, jnp.asarray(self.nvec), self.dtype)

    def contains(self, x) -> jax.Array:
        x = jnp.asarray(x)
        return jnp.all((x >= 0) & (x < jnp.asarray(self.nvec)))
