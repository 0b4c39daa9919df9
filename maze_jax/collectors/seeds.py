"""The seed axis: a run's independent trainings side by side (`runner.n_seeds`), added and removed here alone.

A collector builds its trainer for a batch of seeds in whichever way suits it, and `with_seeds` turns it into the
run's trainer, whose state has a leading seed axis with several seeds and none with one:
- a JAX-env collector builds one seed's trainer; several seeds are that trainer vmapped into one program;
- a Python-env collector steps every seed's envs as one batch, so its learner state, metrics and evaluation
  statistics always carry the seed axis (`on_host` trainers); with one seed it is taken off here.
Either way `init` takes one agent key, split into one key per seed.
"""

from __future__ import annotations

from typing import Callable

import jax

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


def vmap_seeds(trainer: Trainer, n_seeds: int) -> Trainer:
    """`n_seeds` independent trainings in one compiled program: every function mapped over a leading seed axis."""
    return trainer._replace(
        init=lambda agent_key, env_key, hyperparams=None: jax.vmap(trainer.init, in_axes=(0, 0, None))(
            seed_keys(agent_key, n_seeds), seed_keys(env_key, n_seeds), hyperparams),
        train_epoch=jax.vmap(trainer.train_epoch),
        evaluate=lambda state, key: jax.vmap(trainer.evaluate)(state, seed_keys(key, n_seeds)),
        n_seeds=n_seeds,
    )


def with_seeds(trainer: Trainer, n_seeds: int) -> Trainer:
    """The run's trainer of `n_seeds` seeds from a collector's (see the module's docstring)."""
    if not trainer.on_host:
        return trainer if n_seeds == 1 else vmap_seeds(trainer, n_seeds)
    init = lambda agent_key, env_key, hyperparams=None: trainer.init(  # noqa: E731
        seed_keys(agent_key, n_seeds), env_key, hyperparams)
    if n_seeds > 1:
        return trainer._replace(init=init, n_seeds=n_seeds)
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
