"""Training algorithms as pure functions; `build_trainer` builds the one the `algorithm` config names."""

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
    hyperparams: dict | None = None  # the config's traced hyperparameters, by Maze name (lr, gamma, ...)
    init_with: Callable | None = None  # init_with(key, hyperparams) -> state; `init` is init_with(key, hyperparams)


def vmap_trainer(trainer: Trainer, n_seeds: int) -> Trainer:
    """`n_seeds` independent trainings in one compiled program: every function mapped over a leading seed axis."""
    import jax

    if n_seeds == 1:
        return trainer
    split = lambda key: jax.random.split(key, n_seeds)
    return trainer._replace(
        init=lambda key: jax.vmap(trainer.init)(split(key)),
        init_with=lambda key, hparams: jax.vmap(trainer.init_with, in_axes=(0, None))(split(key), hparams),
        train_epoch=jax.vmap(trainer.train_epoch),
        evaluate=lambda state, key: jax.vmap(trainer.evaluate)(state, split(key)),
        policy_params=jax.vmap(trainer.policy_params),
        with_hyperparams=jax.vmap(trainer.with_hyperparams),
        model_params=jax.vmap(trainer.model_params),
        with_model=jax.vmap(trainer.with_model),
        n_seeds=n_seeds,
    )


def build_trainer(cfg, env_spec, model: Any = None) -> Trainer:
    """The trainer named by `cfg.algorithm._target_` (a builder `(cfg, env_spec, model) -> Trainer`, such as
    `maze_jax.algorithms.es.build`), from the composed config. `model`, a flax module, replaces the model config."""
    import hydra.utils

    from maze_jax.config import ConfigError

    target = cfg.algorithm.get("_target_")
    if not target:
        raise ConfigError("algorithm._target_ is missing: an algorithm config names its trainer builder, "
                          "e.g. maze_jax.algorithms.es.build")
    try:
        builder = hydra.utils.get_object(target)
    except Exception as error:  # hydra wraps import errors of all kinds
        raise ConfigError(f"algorithm._target_={target!r} cannot be imported: {error}") from None
    return builder(cfg, env_spec, model)


def make_train(config, env=None, model: Any = None) -> Callable:
    """A whole training as one pure function: `train(key, hyperparams=None) -> (final state, metrics per epoch)`.

    `config` is a composed training config (`maze_jax.session.compose_config`); `env` (an EnvSpec, a gymnax env,
    an (env, params) pair or an id) and `model` (a flax module) replace its env and model when given. The env is
    wrapped as `config.wrappers` says (normalisation statistics are estimated once, here, on the host).
    `algorithm.n_epochs` epochs run in one `lax.scan`. `hyperparams` overrides traced hyperparameters by Maze name,
    so `jax.vmap` maps over seeds and over hyperparameters alike:
    `jax.jit(jax.vmap(train, in_axes=(None, {"lr": 0})))(key, {"lr": jnp.array([1e-4, 3e-4, 1e-3])})`.
    """
    import jax

    from maze_jax.envs import as_env_spec, build_env

    from maze_jax.wrappers import wrap_env

    env_spec = wrap_env(build_env(config.env) if env is None else as_env_spec(env), config, echo=lambda *a, **k: None)
    trainer = build_trainer(config, env_spec, model)
    if trainer.n_epochs <= 0:
        raise ValueError(f"make_train needs algorithm.n_epochs > 0 (got {trainer.n_epochs})")

    def train(key, hyperparams: dict | None = None):
        unknown = set(hyperparams or {}) - set(trainer.hyperparams)
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; {trainer.name} has {sorted(trainer.hyperparams)}")
        state = trainer.init_with(key, {**trainer.hyperparams, **(hyperparams or {})})
        return jax.lax.scan(lambda s, _: trainer.train_epoch(s), state, None, length=trainer.n_epochs)

    train.trainer = trainer  # init, train_epoch, evaluate, ... for loops of one's own
    return train
