"""An env that does not step as training needs is refused before training, naming it: a Python env whose
observations do not fit its declared space, a JAX env whose rewards or flags are not one number per step or whose
step and reset disagree on the observations' shapes."""

from __future__ import annotations

import re

import gymnasium
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import Countdown

from maze_jax.config import ConfigError
from maze_jax.envs import as_env_spec
from maze_jax.envs.python_env import PythonEnv


class Declared(gymnasium.Env):
    """An env that declares `observation_space` and returns `first` from reset."""

    def __init__(self, observation_space, first):
        self.observation_space, self.action_space, self.first = observation_space, gymnasium.spaces.Discrete(2), first

    def reset(self, seed=None, options=None):
        return self.first, {}

    def step(self, action):
        return self.first, 0.0, True, False, {}


@pytest.mark.parametrize("space, first, says", [
    (gymnasium.spaces.Discrete(5), 7, "observation 7 (shape (), dtype int64) outside Discrete(5)"),
    (gymnasium.spaces.Box(-1, 1, (3,)), np.zeros(4), "observation [0. 0. 0. 0.] (shape (4,), dtype float64) outside "
                                                     "Box(-1.0, 1.0, (3,), float32)"),
    (gymnasium.spaces.Dict({"pos": gymnasium.spaces.Discrete(3)}), {"pos": 3}, "observation['pos'] 3"),
])
def test_an_observation_outside_its_space_is_refused_naming_the_space_and_the_value(space, first, says):
    with pytest.raises(ConfigError, match=r"^env Bad-v0: reset returned an " + re.escape(says)):
        PythonEnv(lambda: Declared(space, first), "Bad-v0")


def test_observations_that_fit_pass_even_with_another_dtype_or_out_of_bounds():
    PythonEnv(lambda: Declared(gymnasium.spaces.Box(-1, 1, (2,)), np.array([5.0, 0.0])), "Loose-v0")  # float64, >high
    PythonEnv(lambda: Declared(gymnasium.spaces.Discrete(3, start=1), np.int64(3)), "Shifted-v0")


def test_a_python_env_whose_reward_is_an_array_fails_in_one_line_that_says_so():
    from python_envs import Countdown as PythonCountdown

    from maze_jax.collectors import EnvFailed
    from maze_jax.shell.collectors.vector_env import VectorEnv

    class ArrayReward(PythonCountdown):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            return obs, np.array([reward], np.float32), terminated, truncated, info

    envs = VectorEnv(PythonEnv(ArrayReward, "ArrayReward-v0"), 2, 0)
    with pytest.raises(EnvFailed, match=r"^env ArrayReward-v0 raised ValueError in step \(vector step 0\): .* \(did "
                                        r"step return a reward or a terminated/truncated flag of more than one"):
        envs.step(np.zeros(2, np.int64))
    envs.close()


class Reshaped(Countdown):
    """Countdown whose step returns `reward`, `done` or `obs` reshaped to `shape` (or cast to `dtype`)."""

    def __init__(self, what: str, shape=None, dtype=None):
        super().__init__()
        self.what, self.shape, self.dtype = what, shape, dtype

    def step(self, key, state, action, params=None):
        obs, state, reward, *flags, info = super().step(key, state, action, params)
        values = {"obs": obs, "reward": reward, "done": flags[0]}
        value = values[self.what]
        value = value.reshape(self.shape) if self.shape is not None else value.astype(self.dtype)
        values[self.what] = value
        return values["obs"], state, values["reward"], values["done"], *flags[1:], info


@pytest.mark.parametrize("env, says", [
    (Reshaped("reward", (1,)), r"step returns a reward of shape \(1,\), where one number per step"),
    (Reshaped("done", (1, 1)), r"step returns a (done|terminated) of shape \(1, 1\)"),
    (Reshaped("obs", dtype=jnp.int32), r"step returns observations int32\[1\], reset float32\[1\]"),
    (Reshaped("obs", (1, 1)), r"step returns observations float32\[1, 1\], reset float32\[1\]"),
])
def test_a_jax_env_that_steps_in_shapes_training_cannot_scan_is_refused_naming_it(env, says):
    with pytest.raises(ConfigError, match=r"^env Reshaped: " + says):
        as_env_spec(env)
    assert as_env_spec(Countdown()).name == "Countdown"  # the same env, stepping as it should, passes
