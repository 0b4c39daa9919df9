"""Environments: gymnax's stateless interface, built by name from the `env` config group."""

from maze_jax.envs.gymnax_env import EnvSpec, build_env, make_gymnax
from maze_jax.envs.episodes import EpisodeStats, play_episodes

__all__ = ["EnvSpec", "build_env", "make_gymnax", "EpisodeStats", "play_episodes"]
