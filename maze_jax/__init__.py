"""maze_jax: Maze's RL training workflow as pure, jitted JAX functions.

Importing it sets maze_jax's XLA flags for the CPU backend (`maze_jax.xla_flags`), when JAX's backend has not
started yet."""

from maze_jax.xla_flags import apply_defaults

apply_defaults()

__version__ = "0.1.0"
