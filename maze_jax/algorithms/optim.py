"""Optimizer helpers shared by the algorithms: steps scaled by a traced learning rate, and traced clipping."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def scale_by_learning_rate(updates, learning_rate):
    """A descent step of size `learning_rate` (traced) along optax's transformed `updates`, as optax.adam(lr) would
    take it. Keeping the rate out of the optimizer state lets it live with the other traced hyperparameters."""
    return jax.tree.map(lambda u: -learning_rate * u, updates)


def global_norm(tree) -> jax.Array:
    """The L2 norm of all leaves of `tree` together (0 for an empty tree)."""
    return jnp.sqrt(sum((jnp.sum(g**2) for g in jax.tree.leaves(tree)), jnp.float32(0)))


def clip_by_global_norm(grads, max_norm):
    """Scales `grads` to global norm <= max_norm; max_norm 0 turns clipping off (Maze's convention).

    Written out rather than optax.clip_by_global_norm so `max_norm` can be traced (and 0)."""
    norm = global_norm(grads)
    scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12)), 1.0)
    return jax.tree.map(lambda g: g * scale, grads), norm
