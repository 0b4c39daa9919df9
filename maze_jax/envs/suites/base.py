"""What every suite adapter shares: a gymnax-style env around a suite's own reset and step, with auto-reset, a
step counter for the episode cap, and the one-line errors for a missing extra or an unknown env id."""

from __future__ import annotations

import difflib
import importlib.util
from typing import Any, Iterable

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment

from maze_jax.config import ConfigError


def require(module: str, extra: str, group: str) -> None:
    """A ConfigError saying what to install when the suite's package is missing."""
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f'env={group} needs the {extra} extra: pip install "maze-jax[{extra}]"')


def check_name(name: str, known: Iterable[str], group: str) -> str:
    """`name` if the suite knows it, else a ConfigError listing close matches (or all ids when few)."""
    known = sorted(known)
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=5, cutoff=0.5)
    listed = close if close else known if len(known) <= 30 else known[:30] + ["..."]
    hint = "Close matches" if close else "Valid names"
    raise ConfigError(f"env.name={name!r} is not a {group} env. {hint}: {', '.join(listed)}")


def flat_observation(obs: Any) -> Any:
    """A suite's observation as a flat dict of arrays named by their path (`ems/x1`, `action_mask`); an array
    stays an array. Nested NamedTuples and dataclasses (Jumanji's) become keys the models flatten and concatenate."""
    if isinstance(obs, jax.Array):
        return obs
    leaves = jax.tree_util.tree_flatten_with_path(obs)[0]
    return {"/".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _key_name(key) -> str:
    for attribute in ("name", "key", "idx"):
        if hasattr(key, attribute):
            return str(getattr(key, attribute))
    return str(key)


@struct.dataclass
class SuiteParams:
    """The episode cap (a Python int: the static length of an evaluation episode) and the suite's own params."""

    max_steps_in_episode: int = struct.field(pytree_node=False)
    inner: Any = None


@struct.dataclass
class SuiteState:
    """The suite's own state, the steps taken in this episode and whether the suite truncated it."""

    inner: Any
    time: jax.Array
    truncated: jax.Array


class SuiteEnv(environment.Environment):
    """A gymnax env over a suite's env `inner`, through `suite_reset(key, inner_params) -> (obs, inner_state)` and
    `suite_step(key, inner_state, action, inner_params) -> (obs, inner_state, reward, terminated, truncated)`.

    gymnax's `step` adds the auto-reset and `info["final_observation"]`; an episode is truncated when the suite
    says so or after `params.max_steps_in_episode` steps, whichever comes first."""

    def __init__(self, name: str, inner: Any, params: SuiteParams):
        super().__init__()
        self._name, self.inner, self._params = name, inner, params  # inner: the suite's own env

    @property
    def name(self) -> str:
        return self._name

    @property
    def default_params(self) -> SuiteParams:
        return self._params

    def suite_reset(self, key, inner_params):
        raise NotImplementedError

    def suite_step(self, key, inner_state, action, inner_params):
        raise NotImplementedError

    def reset_env(self, key, params: SuiteParams):
        obs, inner = self.suite_reset(key, params.inner)
        return obs, SuiteState(inner, jnp.int32(0), jnp.bool_(False))

    def step_env(self, key, state: SuiteState, action, params: SuiteParams):
        obs, inner, reward, terminated, truncated = self.suite_step(key, state.inner, action, params.inner)
        state = SuiteState(inner, state.time + 1, jnp.asarray(truncated, bool))
        return obs, state, jnp.asarray(reward, jnp.float32), jnp.asarray(terminated, bool), {}

    def is_truncated(self, state: SuiteState, params: SuiteParams) -> jax.Array:
        return state.truncated | (state.time >= params.max_steps_in_episode)
