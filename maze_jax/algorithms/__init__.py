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
    body = {"__annotations__": dict.fromkeys(names, jax.Array), "__module__": settings.__module__,
            "__doc__": f"Traced hyperparameters of {settings.__name__} (scalars, or arrays under `vmap`): "
                       f"{', '.join(names)}.",
            "names": classmethod(lambda cls: names),
            "of": classmethod(lambda cls, config: cls(**{n: jnp.float32(getattr(config, n)) for n in names}))}
    return struct.dataclass(type(name, (), body))


class Algorithm(NamedTuple):
    """An algorithm with its static settings bound.

    init(key, hyperparams) -> state, whose `params["policy"]` are the policy's parameters and `hparams` the
    traced hyperparameters; update(state, batch) -> (state, metrics by plain name, e.g. `policy_loss`, which the
    shell shows under Maze's tags; action statistics carry their tags), where the batch is a
    `Trajectory` (PPO, A2C, SAC, IMPALA) or one fitness per population member (ES). What a collector drives:
    - acting(state) -> what the actors act with (PPO, A2C, IMPALA: the networks; SAC: the policy and whether it
      still samples its initial random actions); the host collectors hand it to their actor threads and workers;
    - explore(acting, obs, key, memory) -> (env actions, Experience, memory), where `memory` is each env's memory of
      a recurrent model (`initial_memory(n_envs)` at episodes' starts; `()` for feed-forward models);
    - warmup(state, Trajectory) -> state: a replay learner's first `warmup_steps` steps per env (collected by
      `explore` before update 0), stored without learning; `warmup_steps=0` has none. Such a learner's state counts
      its updates in `step` (0: fresh), so a host collector warms up a fresh learner only, not a restored one;
    - ask(state) -> the population's policy parameters (leading member axis) for ES.
    """

    name: str
    config: Any
    policy: Any
    hyperparams: Any
    init: Callable
    update: Callable
    explore: Callable | None = None
    ask: Callable | None = None
    initial_memory: Callable = lambda n: ()
    acting: Callable = lambda state: state.params
    warmup_steps: int = 0
    warmup: Callable = lambda state, trajectory: state
