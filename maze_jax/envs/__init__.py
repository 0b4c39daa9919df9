"""Environments: gymnax's stateless interface, built by name from the `env` config group."""

from maze_jax.envs.deferred_imports import defer_plotting_imports

defer_plotting_imports()  # before anything imports gymnax

from maze_jax.envs.episodes import EpisodeStats, Recording, play_episodes
from maze_jax.envs.gymnax_env import EnvSpec, make_gymnax
from maze_jax.envs.make import as_env_spec, build_env, make_env

__all__ = ["EnvSpec", "as_env_spec", "build_env", "make_env", "make_gymnax", "EpisodeStats", "Recording",
           "play_episodes"]
