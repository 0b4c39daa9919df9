"""maze_jax: Maze's RL training workflow as pure, jitted JAX functions."""

__version__ = "0.1.0"
