"""Training algorithms as pure functions over explicit state, one protocol for ES, PPO, A2C, SAC and IMPALA.

An algorithm's module holds its frozen settings (`ESConfig`, `ActorCriticConfig`: static sizes plus default
hyperparameters), its traced hyperparameters (a flax struct, so `vmap` maps over them), its state and pure
`init`, `update` and the function a collector drives. `make_es` / `make_actor_critic` bind the settings into an
`Algorithm`. Nothing here touches an environment: collectors (`maze_jax.collectors`) feed `update`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

TRACED = {"traced": True}
"""The metadata of a settings field whose value lives traced in the learner's state (`hyperparams_struct`)."""


def traced(default) -> Any:
    """A settings field that is a hyperparameter: traced, so `jax.vmap` maps over it (the others are static)."""
    return dataclasses.field(default=default, metadata=TRACED)


def hyperparams_struct(settings: type, name: str) -> type:
    """The traced hyperparameters of an algorithm's frozen settings class: a flax struct with one float32 field
    per `traced` field of `settings`, in their order, so each hyperparameter is declared once, in the settings.
    `struct.names()` lists them; `struct.of(config)` holds a config's values."""
    names = tuple(f.name for f in dataclasses.fields(settings) if f.metadata.get("traced"))
    return _struct(names, name, settings.__module__, settings.__name__)


def _struct(names: tuple, name: str, module: str, owner: str) -> type:
    body = {"__annotations__": dict.fromkeys(names, jax.Array), "__module__": module,
            "__doc__": f"Traced hyperparameters of {owner} (scalars, or arrays under `vmap`): {', '.join(names)}.",
            "names": classmethod(lambda cls: names),
            "of": classmethod(lambda cls, config: cls(**{n: jnp.float32(getattr(config, n)) for n in names}))}
    return struct.dataclass(type(name, (), body))


def extend_hyperparams(hparams, extra: dict):
    """`hparams` with more traced hyperparameters (a custom loss's own, by name: float defaults), in a struct of
    their own type that lists all of them (`names()`), so they are set, vmapped and read like the built-in ones."""
    base = type(hparams).names()
    clashes = sorted(set(extra) & set(base))
    if clashes:
        raise ValueError(f"loss_hyperparams {clashes} are already hyperparameters of the algorithm: {list(base)}")
    bad = sorted(k for k in extra if not k.isidentifier())
    if bad:
        raise ValueError(f"loss_hyperparams need Python names (they are read as hparams.<name>): {bad}")
    cls = _struct(base + tuple(extra), type(hparams).__name__, type(hparams).__module__, "a custom loss")
    return cls(**{n: getattr(hparams, n) for n in base}, **{n: jnp.float32(v) for n, v in extra.items()})


class Algorithm(NamedTuple):
    """An algorithm with its static settings bound: what every collector drives, one protocol for all learners.

    init(key, hyperparams) -> state, whose `params["policy"]` are the policy's parameters and `hparams` the
    traced hyperparameters; update(state, Trajectory) -> (state, metrics by plain name, e.g. `policy_loss`, which
    the shell shows under Maze's tags; action statistics carry their tags). What a collector drives:
    - acting(state) -> what the actors act with (PPO, A2C, IMPALA: the networks; SAC: the policy and whether it
      still samples its initial random actions; ES: the population, one member per env); the host collectors
      hand it to their actor threads and workers;
    - explore(acting, obs, key, memory) -> (env actions, Experience, memory), where `memory` is each env's memory of
      a recurrent model (`initial_memory(n_envs)` at episodes' starts; `()` for feed-forward models);
    - warmup(state, Trajectory) -> state: a replay learner's first `warmup_steps` steps per env (collected by
      `explore` before update 0), stored without learning; `warmup_steps=0` has none. Such a learner's state counts
      its updates in `step` (0: fresh), so a host collector warms up a fresh learner only, not a restored one.

    The sizes a collector reads from `config`: `n_envs`, `n_rollout_steps`, `epoch_length` (updates per epoch),
    `n_eval_episodes`, `deterministic_eval`, `mesh`. Two shapes of rollout, chosen by `fresh_episodes`:
    - False (PPO, A2C, SAC, IMPALA): the envs run on from rollout to rollout, `n_rollout_steps` steps each, and
      the actors may act one update behind the learner (the host collectors' `runner.policy_lag`);
    - True (ES, or any learner of whole episodes): every rollout starts every env from a reset, env i and env
      i + n_envs / 2 from the same state with the same randomness (antithetic pairs), each env acting with its own
      row of `acting(state)` (`explore` sees one env at a time, with the key of its pair), always with the state
      being updated. On JAX envs a rollout lasts one episode length (or `n_rollout_steps`, if more) and episodes
      follow each other; Python envs play one episode per env, queued over the host's envs, and the Trajectory
      is padded after each env's episode (reward 0, no end flag). `episode_cap` caps training episodes, in whole
      env steps (0: the env's own limit); evaluation keeps the env's.
    """

    name: str
    config: Any
    policy: Any
    hyperparams: Any
    init: Callable
    update: Callable
    explore: Callable
    initial_memory: Callable = lambda n: ()
    acting: Callable = lambda state: state.params
    warmup_steps: int = 0
    warmup: Callable = lambda state, trajectory: state
    fresh_episodes: bool = False
    masks_steps: bool = False
    """Whether `update` leaves out the steps a Trajectory marks as no transitions (`Trajectory.valid`), as
    envpool's jitted rollouts need (`shell.collectors.envpool_xla`)."""
    episode_cap: int = 0
