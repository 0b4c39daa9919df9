"""Optimizer helpers shared by the algorithms."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def set_learning_rate(opt_state, learning_rate):
    """`opt_state` of an `optax.inject_hyperparams` optimizer with a new learning rate (a traced scalar)."""
    hyperparams = {**opt_state.hyperparams, "learning_rate": jnp.asarray(learning_rate, jnp.float32)}
    return opt_state._replace(hyperparams=hyperparams)


def clip_by_global_norm(grads, max_norm):
    """Scales `grads` to global norm <= max_norm; max_norm 0 turns clipping off (Maze's convention).

    Written out rather than optax.clip_by_global_norm so `max_norm` can be traced (and 0)."""
    norm = jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree.leaves(grads)))
    scale = jnp.where(max_norm > 0, jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-12)), 1.0)
    return jax.tree.map(lambda g: g * scale, grads), norm
