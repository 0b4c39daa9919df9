"""A Python env whose observations do not fit its declared space is refused before training, naming both."""

from __future__ import annotations

import re

import gymnasium
import numpy as np
import pytest

from maze_jax.config import ConfigError
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
