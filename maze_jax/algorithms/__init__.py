"""Training algorithms as pure functions; `build_trainer` picks one by the `algorithm` config group's choice."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple


class Trainer(NamedTuple):
    """What the shell needs of an algorithm. `init` and `train_epoch` are pure and jittable.

    init(key) -> state; train_epoch(state) -> (state, metrics: dict of scalar arrays keyed by TensorBoard tag);
    evaluate(state, key) -> EpisodeStats of deterministic evaluation episodes (one per env);
    policy_params(state) -> the parameters of the policy being trained (evaluated, kept as best, rolled out);
    with_hyperparams(state) -> state carrying this config's traced hyperparameters (applied on resume);
    model_params(state) -> {"policy": ..., "critic": ...} and with_model(state, that dict) -> state: how a run
    trained with another algorithm hands over its networks.
    """

    name: str
    policy: Any
    n_epochs: int
    init: Callable
    train_epoch: Callable
    evaluate: Callable
    policy_params: Callable
    with_hyperparams: Callable
    model_params: Callable
    with_model: Callable
    patience: int = 0  # epochs without a better evaluation before early stopping; 0 = never
    n_seeds: int = 1  # > 1: every function maps over a leading seed axis of the state (see vmap_trainer)


def vmap_trainer(trainer: Trainer, n_seeds: int) -> Trainer:
    """`n_seeds` independent trainings in one compiled program: every function mapped over a leading seed axis."""
    import jax

    if n_seeds == 1:
        return trainer
    split = lambda key: jax.random.split(key, n_seeds)
    return trainer._replace(
        init=lambda key: jax.vmap(trainer.init)(split(key)),
        train_epoch=jax.vmap(trainer.train_epoch),
        evaluate=lambda state, key: jax.vmap(trainer.evaluate)(state, split(key)),
        policy_params=jax.vmap(trainer.policy_params),
        with_hyperparams=jax.vmap(trainer.with_hyperparams),
        model_params=jax.vmap(trainer.model_params),
        with_model=jax.vmap(trainer.with_model),
        n_seeds=n_seeds,
    )


def build_trainer(name: str, cfg, env_spec) -> Trainer:
    """The trainer for algorithm `name` (es, ppo, a2c) from the composed config (algorithm, runner, model, critic)."""
    from maze_jax.algorithms import actor_critic, es
    from maze_jax.config import ConfigError

    builders = {
        "es": es.build,
        "ppo": lambda cfg, env_spec: actor_critic.build(cfg, env_spec, ppo=True),
        "a2c": lambda cfg, env_spec: actor_critic.build(cfg, env_spec, ppo=False),
    }
    if name not in builders:
        raise ConfigError(f"algorithm={name!r} is unknown. Valid: {', '.join(sorted(builders))}")
    return builders[name](cfg, env_spec)
