"""For research code: a whole training as one pure function, and the way from its result to a usable policy.

    from maze_jax.research import make_train
    from maze_jax.algorithms.actor_critic import ActorCriticConfig

    train = make_train(ActorCriticConfig(n_epochs=5, n_envs=8), env="CartPole-v1")    # no Hydra needed
    state, metrics = jax.jit(train)(jax.random.key(0))
    policy = train.to_policy(state)                  # with the env's wrappers (normalisation) kept
    train.save(state, "outputs/my_run")              # a run directory for load_policy and the rollout CLI

`jax.vmap(train)` maps over seeds, `jax.vmap(train, in_axes=(None, {"lr": 0}))` over hyperparameters.
"""

from __future__ import annotations

import os
import warnings
from typing import Any, Callable, Mapping

import jax
import numpy as np
from omegaconf import OmegaConf

from maze_jax.algorithms import extend_hyperparams
from maze_jax.algorithms.es import ESConfig
from maze_jax.algorithms.impala import ImpalaConfig
from maze_jax.algorithms.losses import Losses
from maze_jax.algorithms.sac import SACConfig
from maze_jax.algorithms.metrics import episode_statistics
from maze_jax.collectors import TrainState, policy_params
from maze_jax.collectors.evaluation import evaluate
from maze_jax.collectors.seeds import one_seed_evaluation
from maze_jax.config import ConfigError
from maze_jax.envs import EnvSpec, as_env_spec, build_env
from maze_jax.shell.assembly import build_algorithm, build_trainer
from maze_jax.shell.checkpoints import LATEST, CheckpointDir
from maze_jax.shell.collectors.host import HostEvaluator
from maze_jax.shell.loop import Progress
from maze_jax.shell.programs import enable_compilation_cache
from maze_jax.shell.settings import CONFIG_FILE, LoopSettings, RunSettings, read_settings
from maze_jax.shell.wrappers import normalization_statistics, statistics_to_meta, wrap_env
from maze_jax.trained_policy import TrainedPolicy
from maze_jax.xla_flags import came_too_late

DEFAULT_ENV = {"_target_": "maze_jax.envs.make_env", "name": "CartPole-v1"}
DEFAULT_MODEL = {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [64, 64], "non_lin": "Tanh"}
# JAX's persistent compilation cache: a re-run of the same script skips most of its compile time.
DEFAULT_CACHE = "~/.cache/maze_jax/jax_cache"
STEP_COUNT = "train_BaseEnvEvents/reward/step_count"  # an epoch's env steps (over seeds and envs)


def _settings(config, env, model, critic, wrappers) -> RunSettings:
    """RunSettings from a composed config (`compose_config`), RunSettings, or an algorithm's settings."""
    if isinstance(config, RunSettings):
        return config
    if isinstance(config, Mapping) or OmegaConf.is_config(config):
        return read_settings(config)
    return RunSettings(algorithm=config, loop=LoopSettings(), model=model or DEFAULT_MODEL, critic=critic,
                       wrappers=wrappers or {}, env=DEFAULT_ENV)


def make_train(config, env=None, model=None, *, critic: Any = None, wrappers: dict | None = None,
               policy_loss: Callable | None = None, value_loss: Callable | None = None,
               entropy_loss: Callable | None = None, loss_hyperparams: Mapping[str, float] | None = None,
               eval_episodes: int = 0, compilation_cache: str | None = DEFAULT_CACHE) -> Callable:
    """A whole training as one pure function: `train(key, hyperparams=None) -> (final TrainState, metrics)`,
    metrics stacked per epoch. `algorithm.n_epochs` epochs run in one `lax.scan`. On a Python env (gymnasium,
    envpool, your own) the epochs run on the host instead: the same call and result, but not under `jit` or
    `vmap` (for several seeds there, use `RunSettings(n_seeds=...)`).

    config: algorithm settings (`ESConfig`, `ActorCriticConfig`, `SACConfig`, `ImpalaConfig`: no Hydra needed),
      `RunSettings`, or a composed
      config (`maze_jax.shell.settings.compose_config`).
    env: an id ("CartPole-v1"), a gymnax-style env, an (env, params) pair or an EnvSpec; default the config's env
      (CartPole-v1 with bare algorithm settings). It is wrapped as `wrappers` (or the config) says; normalisation
      statistics are estimated once, here, on the host.
    model, critic: model configs (dicts with a `_target_`) or flax modules with an `n_outputs` field.
    policy_loss, value_loss, entropy_loss: replace PPO's or A2C's loss terms (see `maze_jax.algorithms.losses`);
      a term may return `(per-sample loss, {name: per-sample value})`, and those auxiliary metrics come back by name.
    loss_hyperparams: the loss terms' own traced hyperparameters with their defaults (`{"kl_coef": 0.1}`): the
      terms read `hparams.kl_coef`, and `train(key, {"kl_coef": 0.5})` sets them or vmaps over them like `lr`.
    eval_episodes: > 0 adds `eval_BaseEnvEvents/reward/*` of that many deterministic episodes after every epoch,
      inside the jitted run (per seed under `vmap`).
    compilation_cache: JAX's persistent compilation cache folder (None or "" = off), set for the whole process.
    `hyperparams` overrides traced hyperparameters by name (`lr`, `gamma`, ...; ES: `step_size`, ...).
    The metrics hold, per epoch, the learner's statistics by plain name (`policy_loss`, ...), the episodes' under
    Maze's tags (`train_BaseEnvEvents/reward/mean`, with `eval_episodes` also `eval_...`), and `total_env_steps`:
    the env steps taken since the start, to plot curves against (int32, exact to 2^31 steps).
    """
    late = came_too_late()
    if late and jax.default_backend() == "cpu":
        warnings.warn(f"JAX's CPU backend started before `import maze_jax`, so XLA runs without {' '.join(late)}: "
                      f"batched linear algebra in an env or loss of one's own can hang under jax.vmap (see "
                      f"maze_jax/xla_flags.py). Import maze_jax first, or set "
                      f"XLA_FLAGS='{' '.join(late)}' before starting Python", stacklevel=2)
    if compilation_cache:
        enable_compilation_cache(compilation_cache)
    settings = _settings(config, env, model, critic, wrappers)
    env_spec = build_env(settings.env) if env is None else as_env_spec(env)
    env_spec = wrap_env(env_spec, settings.wrappers, None, settings.normalization_samples, echo=lambda *a, **k: None)
    given = {term: loss for term, loss in {"policy": policy_loss, "value": value_loss, "entropy": entropy_loss}.items()
             if loss is not None}
    if (given or loss_hyperparams) and isinstance(settings.algorithm, (ESConfig, SACConfig, ImpalaConfig)):
        raise ConfigError(f"policy_loss, value_loss, entropy_loss and loss_hyperparams replace or extend PPO's and "
                          f"A2C's loss terms; {settings.algorithm.name} has losses of its own")
    losses = Losses.for_algorithm(getattr(settings.algorithm, "ppo", True))._replace(**given)
    algorithm = build_algorithm(settings.algorithm, env_spec, model or settings.model, critic or settings.critic,
                                losses)
    if loss_hyperparams:
        algorithm = algorithm._replace(hyperparams=extend_hyperparams(algorithm.hyperparams, loss_hyperparams))
    trainer = build_trainer(algorithm, env_spec, settings.n_seeds, settings.host)
    n_epochs = settings.algorithm.n_epochs
    if env_spec.is_python:
        play = HostEvaluator(algorithm.policy, env_spec, eval_episodes or 1, settings.n_seeds, True)
        play = one_seed_evaluation(play) if settings.n_seeds == 1 else play
    else:
        play = lambda params, key: evaluate(algorithm.policy, params, env_spec, key, eval_episodes)  # noqa: E731
    if n_epochs <= 0:
        raise ValueError(f"make_train needs n_epochs > 0 (got {n_epochs})")

    def train(key, hyperparams: dict | None = None):
        unknown = set(hyperparams or {}) - set(algorithm.hyperparams.names())
        if unknown:
            raise ValueError(f"unknown hyperparameters {sorted(unknown)}; {algorithm.name} has "
                             f"{sorted(algorithm.hyperparams.names())}")
        if trainer.on_host and any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves((key, hyperparams))):
            raise TypeError(f"train steps the Python env {env_spec.name} on the host, so it runs outside jax.jit and "
                            "jax.vmap: call it directly (several seeds: RunSettings(n_seeds=...))")
        hparams = algorithm.hyperparams.replace(**(hyperparams or {}))
        state = trainer.init(jax.random.fold_in(key, 0), jax.random.fold_in(key, 1), hparams)

        def epoch(carry, i):
            state, total_steps = carry
            state, metrics = trainer.train_epoch(state)
            total_steps = total_steps + jax.numpy.sum(metrics[STEP_COUNT]).astype(jax.numpy.int32)
            metrics = {**metrics, "total_env_steps": total_steps}
            if eval_episodes:
                played = play(policy_params(state), jax.random.fold_in(jax.random.fold_in(key, 2), i))
                metrics = {**metrics, **episode_statistics(played, "eval")}
            return (state, total_steps), metrics

        carry = (state, jax.numpy.int32(0))
        if not trainer.on_host:
            (state, _), metrics = jax.lax.scan(epoch, carry, jax.numpy.arange(n_epochs))
            return state, metrics
        per_epoch = []
        try:
            for i in range(n_epochs):
                carry, metrics = epoch(carry, i)
                per_epoch.append(metrics)
            state = carry[0]
        finally:  # the envs (and their worker processes) end with the call
            trainer.close()
            getattr(play, "close", lambda: None)()
        return state, jax.tree.map(lambda *xs: np.stack(xs), *per_epoch)

    train.trainer, train.algorithm, train.env_spec = trainer, algorithm, env_spec  # pieces for loops of one's own
    train.to_policy = lambda state: to_policy(state, algorithm.policy, env_spec)
    train.save = lambda state, run_dir: save_run(run_dir, state, algorithm.name, env_spec, settings, env)
    return train


def to_policy(state: TrainState, policy, env_spec: EnvSpec) -> TrainedPolicy:
    """A trained state's policy (one state: index a vmapped result first), acting on raw observations: the env's
    wrappers, observation normalisation included, apply as in training."""
    return TrainedPolicy(policy, policy_params(state), env_spec)


def save_run(run_dir: str, state: TrainState, algorithm: str, env_spec: EnvSpec, settings: RunSettings,
             env: Any = None) -> str:
    """Writes `state` (one state, not vmapped) as a run directory that `load_policy`, `RunContext`-style resumes
    and `python -m maze_jax.rollout input_dir=...` read: `hydra_config.yaml` plus `checkpoints/`. A run trained
    on an env object records its name only; loading it then needs the object (`load_policy(..., env=...)`)."""
    os.makedirs(run_dir, exist_ok=True)
    env_cfg = settings.env if env is None else (
        {"_target_": "maze_jax.envs.make_env", "name": env} if isinstance(env, str) else {"name": env_spec.name})
    config = {"env": env_cfg, "wrappers": dict(settings.wrappers or {}), "model": settings.model,
              "critic": settings.critic, "algorithm": {"name": algorithm},
              "seeding": {"env_base_seed": settings.env_seed or 0, "agent_base_seed": settings.agent_seed or 0}}
    if not isinstance(config["model"], Mapping):  # a flax module object
        config["model"] = {"object": type(config["model"]).__qualname__}
    OmegaConf.save(OmegaConf.create(config), os.path.join(run_dir, CONFIG_FILE))
    statistics = normalization_statistics(env_spec)
    progress = Progress(algorithm=algorithm, normalization=None if statistics is None else statistics_to_meta(statistics))
    store = CheckpointDir(os.path.join(run_dir, LATEST))
    try:
        store.save(0, state, progress.to_meta())
    finally:
        store.close()
    return run_dir
