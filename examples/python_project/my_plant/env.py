"""A heating controller as a plain-Python gymnasium env: the kind of business simulation nobody rewrites in JAX.

A room drifts towards the outside temperature; each step the controller picks heating off, low or high. The
reward is minus the distance to the target temperature, minus a little for the energy used. The outside
temperature follows a daily cycle, so a good controller heats ahead of the cold night.
"""

from __future__ import annotations

import math

import gymnasium
import numpy as np
from gymnasium import spaces


class Thermostat(gymnasium.Env):
    """Observation: [room temperature, outside temperature, target, hour of day / 24]; actions: 0 off, 1 low,
    2 high. An episode is one day of `steps_per_day` steps."""

    def __init__(self, target: float = 21.0, steps_per_day: int = 48, energy_cost: float = 0.1):
        self.target, self.steps_per_day, self.energy_cost = float(target), int(steps_per_day), float(energy_cost)
        self.observation_space = spaces.Box(-50.0, 50.0, (4,), np.float32)
        self.action_space = spaces.Discrete(3)

    def _outside(self) -> float:
        return 8.0 + 6.0 * math.sin(2 * math.pi * self.t / self.steps_per_day)

    def _obs(self):
        return np.array([self.room, self._outside(), self.target, self.t / self.steps_per_day], np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t, self.room = 0, float(self.np_random.uniform(12.0, 24.0))
        return self._obs(), {}

    def step(self, action):
        heat = (0.0, 1.5, 3.0)[int(action)]
        self.room += 0.1 * (self._outside() - self.room) + heat
        self.t += 1
        reward = -abs(self.room - self.target) - self.energy_cost * heat
        return self._obs(), reward, False, self.t >= self.steps_per_day, {}
