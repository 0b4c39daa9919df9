"""Shared test helpers: a tiny deterministic environment and a runner for the real CLI in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from flax import struct
from gymnax.environments import environment, spaces

REPO = Path(__file__).resolve().parents[1]


@struct.dataclass
class CountdownState(environment.EnvState):
    left: jax.Array


@struct.dataclass
class CountdownParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class Countdown(environment.Environment):
    """Every episode lasts `length` steps; each step pays 1 + action."""

    def __init__(self, length: int = 3):
        super().__init__()
        self.length = length

    @property
    def default_params(self):
        return CountdownParams()

    def step_env(self, key, state, action, params):
        left = state.left - 1
        state = CountdownState(time=state.time + 1, left=left)
        return self.get_obs(state), state, jnp.float32(1.0) + action, left <= 0, {}

    def reset_env(self, key, params):
        state = CountdownState(time=0, left=jnp.int32(self.length))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.array([state.left], jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0, self.length, (1,))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One compilation cache for every CLI run of the session, so repeated programs compile once."""
    return str(tmp_path_factory.mktemp("jax_cache"))


def run_cli(args: list[str], cwd, cache_dir: str, module: str = "maze_jax.train", timeout: float = 300):
    """Runs `python -m maze_jax.train ARGS` like a user would; returns the CompletedProcess (text output)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    cmd = [sys.executable, "-m", module, *args, f"compilation_cache_dir={cache_dir}"]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def make_trainer(overrides: list[str], env=None):
    """(env_spec, trainer) of a composed training config, built as a run builds them (env: replaces the config's)."""
    from maze_jax.session import build
    from maze_jax.settings import compose_config, read_settings

    cfg, _ = compose_config(overrides)
    return build(read_settings(cfg), env=env, echo=lambda *a, **k: None)


def init_state(trainer, seed: int = 0):
    """A fresh training state of `trainer` from one seed (agent and env keys drawn from it)."""
    key = jax.random.key(seed)
    return trainer.init(key, jax.random.fold_in(key, 1))
