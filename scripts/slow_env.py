"""Deliberately slow Python envs for `scripts/bench.py --only ray` and `scripts/bench_learning.py`: gymnasium's
CartPole-v1 and Pendulum-v1 sleeping 1 ms per step, as a simulator or a business model would take. Importing this
module registers `MazeJaxBench/SlowCartPole-v1` and `MazeJaxBench/SlowPendulum-v1` (train with
`env=gymnasium env.name=slow_env:MazeJaxBench/SlowCartPole-v1`, this folder on PYTHONPATH)."""

from __future__ import annotations

import time

import gymnasium


class Slow(gymnasium.Wrapper):
    """`env`, with `seconds` of sleep in every step."""

    def __init__(self, env: gymnasium.Env, seconds: float = 0.001):
        super().__init__(env)
        self.seconds = seconds

    def step(self, action):
        time.sleep(self.seconds)
        return self.env.step(action)


def slow_cartpole(seconds: float = 0.001) -> gymnasium.Env:
    from gymnasium.envs.classic_control import CartPoleEnv

    return Slow(CartPoleEnv(), seconds)


gymnasium.register("MazeJaxBench/SlowCartPole-v1", entry_point=slow_cartpole, max_episode_steps=500,
                   reward_threshold=475.0)


def slow_pendulum(seconds: float = 0.001) -> gymnasium.Env:
    """gymnasium's Pendulum-v1 sleeping `seconds` every step: where env steps cost, as SAC is meant for."""
    from gymnasium.envs.classic_control import PendulumEnv

    return Slow(PendulumEnv(), seconds)


gymnasium.register("MazeJaxBench/SlowPendulum-v1", entry_point=slow_pendulum, max_episode_steps=200)
