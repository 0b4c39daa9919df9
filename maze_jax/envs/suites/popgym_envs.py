"""`env=popgym`: POPGym's memory tasks (pip install "maze-jax[popgym]"), where an observation shows only part of the
state (a card dealt k steps ago, a count, a pole's position without its velocity), so a policy needs a memory
(`model=vector_obs_rnn`).

POPGym's envs are `gymnasium.Env`s in numpy: they train as Python envs through the host collector (acting and
learning overlapped, `runner=ray` across machines). The JAX port (popjym) is not on the package index."""

from __future__ import annotations

from typing import Any, Callable

from maze_jax.envs.gymnax_env import EnvSpec
from maze_jax.envs.make import gymnasium_ids, make_env
from maze_jax.envs.suites.base import check_name, require

PREFIX, VERSION = "popgym-", "-v0"


def popgym_names() -> list[str]:
    """The POPGym envs registered with gymnasium (navigation tasks only with POPGym's own `navigation` extra)."""
    import popgym  # noqa: F401 (registers its envs)

    return sorted(k[len(PREFIX):-len(VERSION)] for k in gymnasium_ids() if k.startswith(PREFIX) and k.endswith(VERSION))


def make_popgym(name: str = "RepeatPreviousEasy", kwargs: dict | None = None, max_episode_steps=None,
                reward_threshold: Any = "auto", echo: Callable = print) -> EnvSpec:
    """The `env=popgym` factory: `name` a POPGym env without its prefix and version (RepeatPreviousEasy,
    CountRecallMedium, PositionOnlyCartPoleHard, ...); `kwargs` go to its constructor."""
    require("popgym", "popgym", "popgym")
    name = check_name(name, popgym_names(), "popgym")
    return make_env(f"popgym:{PREFIX}{name}{VERSION}", kwargs, max_episode_steps, reward_threshold, "gymnasium", echo)
