"""A plain-Python environment of one's own, trained by maze_jax without rewriting it in JAX."""
