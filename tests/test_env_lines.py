"""What a run says about its env before training: what steps it, and an action Box without bounds."""

from __future__ import annotations

import gymnasium
import numpy as np

import python_envs  # noqa: F401  (registers MazeJaxTest/Countdown-v0)
from maze_jax.envs import build_env, make_env
from maze_jax.envs.make import as_env_spec
from maze_jax.shell.env_lines import stepped_by, unbounded_action_note


class Unbounded(gymnasium.Env):
    observation_space = gymnasium.spaces.Box(-1.0, 1.0, (2,), np.float32)
    action_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)

    def reset(self, seed=None, options=None):
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.zeros(2, np.float32), 0.0, True, False, {}


def test_the_line_names_what_steps_the_env():
    quiet = dict(echo=lambda *a, **k: None)
    assert stepped_by(make_env("CartPole-v1", **quiet)) == ("Env CartPole-v1: a JAX env (gymnax), stepped inside "
                                                            "the compiled programs")
    assert stepped_by(make_env("CartPole-v1", backend="gymnasium", **quiet)) == (
        "Env CartPole-v1: gymnasium's class gymnasium.envs.classic_control.cartpole.CartPoleEnv, stepped in Python")
    assert stepped_by(build_env({"_target_": "python_envs.Countdown"})).endswith(
        ": your own class python_envs.Countdown, stepped in Python")


def test_an_action_box_without_bounds_gets_a_warning_and_a_bounded_one_none():
    assert unbounded_action_note(as_env_spec(Unbounded())) == (
        "Warning: the action space Box(3,) has no bounds: the policy's Gaussian actions are unbounded too (give the "
        "env's Box its real bounds, so that actions are squashed into them)")
    assert unbounded_action_note(make_env("Pendulum-v1", echo=lambda *a, **k: None)) == ""
    assert unbounded_action_note(make_env("CartPole-v1", echo=lambda *a, **k: None)) == ""


def test_a_missing_module_or_env_config_names_where_it_was_looked_for(tmp_path, monkeypatch):
    import os

    import pytest
    from hydra.errors import MissingConfigException

    from maze_jax.config import ConfigError
    from maze_jax.shell.settings import hydra_error_line

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        make_env("mysim:Foo-v0", echo=lambda *a, **k: None)
    assert str(refused.value).endswith(f"; run from {os.getcwd()}, where a module of your own is found (or put its "
                                       "folder on PYTHONPATH)")
    missing = MissingConfigException("Could not find 'env/thermostat'", "env/thermostat", ["cartpole", "gymnasium"])
    assert hydra_error_line(missing).endswith("; a config of your own (env/thermostat.yaml in a folder conf/) needs "
                                              "--config-dir conf")
    close = MissingConfigException("Could not find 'env/cartpol'", "env/cartpol", ["cartpole", "gymnasium"])
    assert hydra_error_line(close).endswith("Did you mean env=cartpole?")
