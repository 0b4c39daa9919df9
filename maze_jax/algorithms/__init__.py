"""Training algorithms as pure functions over explicit state, one protocol for ES, PPO and A2C.

An algorithm's module holds its frozen settings (`ESConfig`, `ActorCriticConfig`: static sizes plus default
hyperparameters), its traced hyperparameters (a flax struct, so `vmap` maps over them), its state and pure
`init`, `update` and the function a collector drives. `make_es` / `make_actor_critic` bind the settings into an
`Algorithm`. Nothing here touches an environment: collectors (`maze_jax.collectors`) feed `update`.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Algorithm(NamedTuple):
    """An algorithm with its static settings bound.

    init(key, hyperparams) -> state, whose `params["policy"]` are the policy's parameters and `hparams` the
    traced hyperparameters; update(state, batch) -> (state, metrics by TensorBoard tag), where the batch is a
    `Trajectory` (PPO, A2C) or one fitness per population member (ES). What a collector drives:
    explore(params, obs, key, memory) -> (env actions, Experience, memory) for PPO and A2C, where `memory` is each
    env's memory of a recurrent model (`initial_memory(n_envs)` at episodes' starts; `()` for feed-forward models);
    ask(state) -> the population's policy parameters (leading member axis) for ES.
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
