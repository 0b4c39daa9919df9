"""Adapters from the JAX env suites researchers use (Brax, Craftax, Jumanji, XLand-MiniGrid) to the gymnax-style
interface maze_jax trains on. Each suite is an optional extra (`pip install "maze-jax[brax]"`, ...); its module
imports the suite only when an env is built, so a missing extra is one line saying what to install."""
