"""Plain-Python (gymnasium) envs for the tests: a countdown that can misbehave on request, every space kind, and a
numpy port of the structured, masked 2D cutting env that must match the JAX one step for step.

Importing this module registers `MazeJaxTest/Countdown-v0` (and `MazeJaxTest/Frames-v0`), so
`env.name=python_envs:MazeJaxTest/Countdown-v0` exercises gymnasium's `module:Id` form."""

from __future__ import annotations

import os
import signal
import time

import gymnasium
import numpy as np
from gymnasium import spaces

from maze_jax.envs.cutting_2d import DEMAND
from maze_jax.envs.structured import SubStep


class Countdown(gymnasium.Env):
    """Every episode lasts `length` steps and each step pays 1 + action, after `sleep_s` seconds (a slow simulator).
    On request it misbehaves at its n-th step (counted over its whole life): raises (`fail_at`), returns NaN
    (`nan_at`), kills its process (`die_at`; only once when `die_once_file` names a file it then creates), or stops
    answering (`hang_at`: an hour's sleep). With `truncates`, its episodes end truncated (a time limit of its own)."""

    metadata = {"render_modes": []}

    def __init__(self, length: int = 3, fail_at: int | None = None, nan_at: int | None = None,
                 die_at: int | None = None, fail_in_reset: bool = False, sleep_s: float = 0.0,
                 die_once_file: str | None = None, hang_at: int | None = None, truncates: bool = False):
        self.length, self.fail_at, self.nan_at, self.die_at, self.hang_at = length, fail_at, nan_at, die_at, hang_at
        self.sleep_s, self.die_once_file, self.truncates = sleep_s, die_once_file, truncates
        self.fail_in_reset = fail_in_reset
        self.observation_space = spaces.Box(0.0, float(length), (1,), np.float32)
        self.action_space = spaces.Discrete(2)
        self.left, self.steps = length, 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        if self.fail_in_reset:
            raise RuntimeError("the simulator could not start")
        self.left = self.length
        return np.array([self.left], np.float32), {}

    def step(self, action):
        self.steps += 1
        if self.fail_at is not None and self.steps >= self.fail_at:
            raise ValueError(f"pressure too high at step {self.steps}.")
        if self.sleep_s:
            time.sleep(self.sleep_s)
        if self.hang_at is not None and self.steps >= self.hang_at:
            time.sleep(3600)
        if self.die_at is not None and self.steps >= self.die_at:
            if self.die_once_file is None or not os.path.exists(self.die_once_file):
                if self.die_once_file is not None:
                    open(self.die_once_file, "w").close()
                os.kill(os.getpid(), signal.SIGKILL)
        self.left -= 1
        reward = 1.0 + float(action)
        if self.nan_at is not None and self.steps >= self.nan_at:
            reward = float("nan")
        ended = self.left <= 0
        return np.array([self.left], np.float32), reward, ended and not self.truncates, ended and self.truncates, {}


class UnevenCountdown(Countdown):
    """A Countdown whose seeded episodes last 1 + seed % 5 steps, reporting an event every step and a KPI at an
    episode's end; `stepped` counts the steps of every copy."""

    stepped = 0

    def reset(self, seed=None, options=None):
        obs, info = super().reset(seed=seed, options=options)
        if seed is not None:
            self.length = self.left = 1 + seed % 5
        return np.array([self.left], np.float32), info

    def step(self, action):
        UnevenCountdown.stepped += 1
        obs, reward, terminated, truncated, _ = super().step(action)
        info = {"events": {"Count/left": float(self.left)}}
        if terminated or truncated:
            info["kpis"] = {"length": float(self.length)}
        return obs, reward, terminated, truncated, info


gymnasium.register("MazeJaxTest/Countdown-v0", entry_point=Countdown, max_episode_steps=50, reward_threshold=5.5)


class Frames(gymnasium.Env):
    """Stacks of 3 grey 8x8 frames, channels first (as gymnasium's FrameStackObservation gives them); 4 steps."""

    def __init__(self):
        self.observation_space = spaces.Box(0, 255, (3, 8, 8), np.uint8)
        self.action_space = spaces.Discrete(2)
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros((3, 8, 8), np.uint8), {}

    def step(self, action):
        self.t += 1
        return np.full((3, 8, 8), 40 * self.t, np.uint8), float(action), self.t >= 4, False, {}


gymnasium.register("MazeJaxTest/Frames-v0", entry_point=Frames)


class TupleActions(gymnasium.Env):
    """A Tuple action of a MultiBinary grid and a Discrete with a start; the reward counts the bits set, plus the
    choice."""

    def __init__(self):
        self.observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
        self.action_space = spaces.Tuple((spaces.MultiBinary((2, 2)), spaces.Discrete(3, start=1)))
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(3, np.float32), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        reward = float(np.sum(action[0])) + float(action[1])
        return np.full(3, self.t / 4, np.float32), reward, self.t >= 4, False, {}


class AllSpaces(gymnasium.Env):
    """Observations of every supported kind; a Dict action of Discrete (with a start), MultiDiscrete and Box."""

    def __init__(self):
        self.observation_space = spaces.Dict({
            "box": spaces.Box(-1.0, 1.0, (2, 3), np.float64), "discrete": spaces.Discrete(4, start=1),
            "multi": spaces.MultiDiscrete([2, 3]), "binary": spaces.MultiBinary(3),
            "pair": spaces.Tuple((spaces.Discrete(2), spaces.Box(0.0, 1.0, (1,))))})
        self.action_space = spaces.Dict({"move": spaces.Discrete(3, start=-1), "pick": spaces.MultiDiscrete([2, 2]),
                                         "force": spaces.Box(-2.0, 2.0, (2,), np.float32)})
        self.t = 0

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        assert self.action_space.contains(action), action
        self.t += 1
        reward = float(action["move"]) + float(np.sum(action["force"]))
        return self.observation_space.sample(), reward, False, self.t >= 5, {}


class Cutting(gymnasium.Env):
    """The structured, masked 2D cutting env (`env=tutorial_cutting_2d_struct_masked`) in numpy, as a user would
    port it: two sub-steps per order, `actor_id` and the masks in the observation."""

    sub_steps = (SubStep("select_piece", ("inventory", "inventory_size", "ordered_piece", "inventory_mask"),
                         ("piece_idx",)),
                 SubStep("cut", ("selected_piece", "ordered_piece", "cutting_mask"), ("cut_rotation", "cut_order")))
    action_masks = {"piece_idx": "inventory_mask", "cut_rotation": "cutting_mask"}

    def __init__(self, max_pieces: int = 50, raw_piece=(4, 3), max_steps: int = 180):
        self.n, self.raw, self.max_steps = max_pieces, np.array(raw_piece), max_steps
        self.demand = np.array(DEMAND)
        big = float(max(raw_piece))
        self.observation_space = spaces.Dict({
            "inventory": spaces.Box(0.0, big, (self.n, 2)), "inventory_size": spaces.Box(0.0, float(self.n), (1,)),
            "ordered_piece": spaces.Box(0.0, big, (2,)), "selected_piece": spaces.Box(0.0, big, (2,)),
            "actor_id": spaces.Discrete(2), "inventory_mask": spaces.MultiBinary(self.n),
            "cutting_mask": spaces.MultiBinary(2)})
        self.action_space = spaces.Dict({"piece_idx": spaces.Discrete(self.n), "cut_rotation": spaces.Discrete(2),
                                         "cut_order": spaces.Discrete(2)})

    def _add(self, piece):
        if (piece <= 0).any():
            return
        if len(self.inventory) >= self.n:
            self.inventory.pop(0)
        self.inventory.append(piece)

    def _order(self):
        return self.demand[self.time % len(self.demand)]

    @staticmethod
    def _fits(piece, order):
        return np.array([(order <= piece).all(), (order[::-1] <= piece).all()])

    def _obs(self):
        inventory = np.zeros((self.n, 2), np.float32)
        if self.inventory:
            inventory[:len(self.inventory)] = self.inventory
        order = self._order()
        selected = min(max(self.selected, 0), self.n - 1)
        valid = selected < len(self.inventory)
        piece = np.array(self.inventory[selected]) if valid else np.zeros(2, int)
        mask = np.zeros(self.n, bool)
        mask[:len(self.inventory)] = [self._fits(np.array(p), order).any() for p in self.inventory]
        return {"inventory": inventory, "inventory_size": np.array([len(self.inventory)], np.float32),
                "ordered_piece": order.astype(np.float32), "selected_piece": piece.astype(np.float32),
                "actor_id": self.actor, "inventory_mask": mask.astype(np.int8),
                "cutting_mask": (self._fits(piece, order) & valid).astype(np.int8)}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.inventory, self.time, self.selected, self.actor, self.raw_used = [self.raw.copy()], 0, 0, 0, 0
        return self._obs(), {}

    def step(self, action):
        reward, valid = 0.0, False
        if self.actor == 0:
            self.selected, self.actor = int(action["piece_idx"]), 1
        else:
            index, rotation, cut_order = min(max(self.selected, 0), self.n - 1), action["cut_rotation"], \
                action["cut_order"]
            order = self._order()
            valid = index < len(self.inventory) and self._fits(np.array(self.inventory[index]), order)[rotation]
            if valid:
                piece = np.array(self.inventory.pop(index))
                ox, oy = order[::-1] if rotation == 1 else order
                px, py = piece
                leftovers = [[px - ox, py], [ox, py - oy]] if cut_order == 0 else [[px, py - oy], [px - ox, oy]]
                for leftover in leftovers:
                    self._add(np.array(leftover))
                if not any((p == self.raw).all() for p in self.inventory):
                    self._add(self.raw.copy())
                reward = -1.0 if (piece == self.raw).all() else 0.0
            else:
                reward = -2.0
            self.time += 1
            self.actor = 0
            self.raw_used += reward == -1.0
        # the JAX env's events and KPI, reported as a Python env reports its own
        info = {"events": {"CuttingEvents/valid_cut": float(valid),
                           "InventoryEvents/pieces_in_inventory": float(len(self.inventory))},
                "kpis": {"raw_piece_usage_per_step": self.raw_used / max(self.time, 1)}}
        return self._obs(), reward, False, self.time >= self.max_steps, info
