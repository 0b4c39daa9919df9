"""The seed axis: a run's independent trainings side by side (`runner.n_seeds`), added and removed here alone.

A collector builds its trainer for a batch of seeds in whichever way suits it, and `with_seeds` turns it into the
run's trainer, whose state has a leading seed axis with several seeds and none with one:
- a JAX-env collector builds one seed's trainer; several seeds are that trainer vmapped into one program;
- a Python-env collector steps every seed's envs as one batch, so its learner state, metrics and evaluation
  statistics always carry the seed axis (`on_host` trainers); with one seed it is taken off here.
Either way `init` takes one agent key, split into one key per seed.

A grid of hyperparameters (`grid`: each traced hyperparameter with a leading axis of `n_configs` values) widens the
seed axis into a member axis of `n_configs * n_seeds` trainings, member `k * n_seeds + s` training configuration
`k` with seed `s`: each configuration trains on the same seeds (the same keys), so that configurations differ by
their hyperparameters alone.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from maze_jax.collectors import Trainer, TrainState
from maze_jax.envs import EpisodeStats


def add_seed_axis(tree):
    """Every leaf with a leading seed axis of length 1."""
    return jax.tree.map(lambda x: x[None], tree)


def drop_seed_axis(tree):
    """Every leaf's leading seed axis taken off (leaves without axes, statistics pooled over seeds, stay)."""
    return jax.tree.map(lambda x: x[0] if getattr(x, "ndim", 0) else x, tree)


def seed_keys(key: jax.Array, n_seeds: int) -> jax.Array:
    """One key per seed: `key` split, or as it is (with the seed axis) for one seed, so that a one-seed run draws
    what a run without seeds would."""
    return jax.random.split(key, n_seeds) if n_seeds > 1 else key[None]


def grid_size(grid) -> int:
    """The configurations of a grid (1 for None: no grid)."""
    return 1 if grid is None else int(jax.tree.leaves(grid)[0].shape[0])


def member_keys(key: jax.Array, n_seeds: int, n_configs: int = 1) -> jax.Array:
    """One key per member: the seeds' keys (`seed_keys`), the same for every configuration."""
    keys = seed_keys(key, n_seeds)
    return keys if n_configs == 1 else jnp.tile(keys, (n_configs,) + (1,) * (keys.ndim - 1))


def member_hyperparams(grid, n_seeds: int):
    """A grid's hyperparameters per member (each configuration's repeated for its `n_seeds` seeds)."""
    return jax.tree.map(lambda x: jnp.repeat(jnp.asarray(x), n_seeds, axis=0), grid)


def vmap_seeds(trainer: Trainer, n_seeds: int, grid=None) -> Trainer:
    """`n_seeds` independent trainings (of every configuration of `grid`) in one compiled program: every function
    mapped over a leading member axis."""
    n_configs = grid_size(grid)
    n_members = n_configs * n_seeds

    def init(agent_key, env_key, hyperparams=None):
        agent_keys, env_keys = member_keys(agent_key, n_seeds, n_configs), member_keys(env_key, n_seeds, n_configs)
        if grid is not None and hyperparams is None:
            return jax.vmap(trainer.init)(agent_keys, env_keys, member_hyperparams(grid, n_seeds))
        return jax.vmap(trainer.init, in_axes=(0, 0, None))(agent_keys, env_keys, hyperparams)

    return trainer._replace(
        init=init, train_epoch=jax.vmap(trainer.train_epoch),
        evaluate=lambda state, key: jax.vmap(trainer.evaluate)(state, member_keys(key, n_seeds, n_configs)),
        n_seeds=n_members)


def with_seeds(trainer: Trainer, n_seeds: int, grid=None) -> Trainer:
    """The run's trainer of `n_seeds` seeds (of every configuration of `grid`, see the module's docstring) from a
    collector's."""
    n_configs = grid_size(grid)
    if not trainer.on_host:
        return trainer if n_seeds * n_configs == 1 else vmap_seeds(trainer, n_seeds, grid)

    def init(agent_key, env_key, hyperparams=None):
        if grid is not None and hyperparams is None:
            hyperparams = member_hyperparams(grid, n_seeds)
        return trainer.init(member_keys(agent_key, n_seeds, n_configs), env_key, hyperparams)

    if n_seeds * n_configs > 1:
        return trainer._replace(init=init, n_seeds=n_seeds * n_configs)
    return one_seed_view(trainer._replace(init=init, n_seeds=1))


def one_seed_view(trainer: Trainer) -> Trainer:
    """A seed-batched host trainer of one seed, seen without the seed axis. The state it was last given back is
    handed to the trainer as the very object it returned, so the trainer knows its own state (a host collector
    keeps its envs running from epoch to epoch and restarts them only for a fresh or restored state)."""
    last: dict = {}

    def batched(state: TrainState) -> TrainState:
        if last.get("single") is state:
            return last["batched"]
        return state.replace(learner=add_seed_axis(state.learner))

    def single(state: TrainState) -> TrainState:
        last.update(batched=state, single=state.replace(learner=drop_seed_axis(state.learner)))
        return last["single"]

    def train_epoch(state: TrainState, should_stop: Callable = lambda: False):
        done = trainer.train_epoch(batched(state), should_stop)
        return None if done is None else (single(done[0]), drop_seed_axis(done[1]))

    def evaluate(state: TrainState, key, should_stop: Callable = lambda: False):
        stats = trainer.evaluate(batched(state), key, should_stop)
        return None if stats is None else drop_seed_axis(stats)

    return trainer._replace(init=lambda *args: single(trainer.init(*args)), train_epoch=train_epoch,
                            evaluate=evaluate)


def one_seed_evaluation(evaluator) -> Callable:
    """A seed-batched host evaluation (`HostEvaluator` of one seed) called as one seed's: `(params, key,
    should_stop)` without the seed axis, giving its EpisodeStats without it (and a `Recording` of its envs as it
    is), or None when stopped. `close()` closes the evaluator."""
    def call(params, key, should_stop: Callable = lambda: False):
        played = evaluator(add_seed_axis(params), key, should_stop)
        if played is None or isinstance(played, EpisodeStats):
            return None if played is None else drop_seed_axis(played)
        stats, recording = played
        return drop_seed_axis(stats), recording

    call.close = evaluator.close
    return call
