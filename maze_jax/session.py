"""One training run from a composed config: build everything, restore if resuming, loop, evaluate, save.

Used by the CLI (`maze_jax.train`) and meant for the Python API, so both share one implementation.
"""

from __future__ import annotations

import math
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree
from omegaconf import DictConfig, OmegaConf, open_dict

from maze_jax.algorithms import Trainer, build_trainer, vmap_trainer
from maze_jax.config import ConfigError, read
from maze_jax.envs import EnvSpec, as_env_spec, build_env
from maze_jax.shell.checkpoints import BEST, LATEST, CheckpointDir, NoCheckpoints, open_for_resume, place_like
from maze_jax.shell.loop import (LoopOptions, Programs, Progress, TrainingLoop, across_seeds, compile_programs,
                                 episode_table, play_in_batches)
from maze_jax.shell.table import format_table
from maze_jax.wrappers import normalization_statistics, statistics_to_meta, stored_statistics, wrap_env

CONFIG_FILE = "hydra_config.yaml"


class RunStopped(Exception):
    """Training ended early (signal or divergence) after saving; `reason` is SIGINT, SIGTERM or non-finite."""

    EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143, "non-finite": 3}

    def __init__(self, reason: str, checkpoint_dir: str):
        super().__init__(f"training stopped ({reason}); resume from the run directory of {checkpoint_dir}")
        self.reason = reason
        self.exit_code = self.EXIT_CODES.get(reason, 1)
# Config sections a checkpoint depends on (shapes, normalisation): resuming with different ones is refused.
SHAPE_SECTIONS = ("env", "wrappers", "model")


def compose_config(overrides: list[str] = ()) -> tuple[DictConfig, dict]:
    """The training config for command-line style `overrides` (as `python -m maze_jax.train` would compose it),
    and its group choices, e.g. `compose_config(["env=cartpole", "algorithm=ppo"])`. Seeds stay as given."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(os.path.join(os.path.dirname(__file__), "conf"), version_base=None):
        cfg = compose("conf_train", overrides=list(overrides), return_hydra_config=True)
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def build(cfg: DictConfig, env=None, model=None, statistics: dict | None = None,
          echo: Callable = print) -> tuple[EnvSpec, Trainer]:
    """Env (wrapped as `cfg.wrappers` says) and trainer (with its networks) from the config; `env` (anything
    `as_env_spec` takes) and `model` (a flax module), when given, replace the env and model configs (the Python
    API's built objects). `statistics`: stored observation-normalisation statistics, which take priority."""
    env_spec = build_env(cfg.env) if env is None else as_env_spec(env)
    env_spec = wrap_env(env_spec, cfg, statistics, echo)
    n_seeds = read(cfg.runner, "n_seeds", int, "runner", low=1)
    return env_spec, vmap_trainer(build_trainer(cfg, env_spec, model), n_seeds)


def agent_key(cfg: DictConfig) -> jax.Array:
    """The run's root key from both seeds."""
    return jax.random.fold_in(jax.random.key(int(cfg.seeding.agent_base_seed)), int(cfg.seeding.env_base_seed))


def check_compatible(input_dir: str, cfg: DictConfig) -> None:
    """Refuses to resume a run whose env or model differ from this config's (shapes would not match)."""
    saved = OmegaConf.load(os.path.join(input_dir, CONFIG_FILE))
    for section in SHAPE_SECTIONS:
        old, new = OmegaConf.to_container(saved[section]), OmegaConf.to_container(cfg[section])
        if section == "env":  # only what defines the environment, not e.g. its reward threshold
            old = {k: v for k, v in old.items() if k != "reward_threshold"}
            new = {k: v for k, v in new.items() if k != "reward_threshold"}
        if old != new:
            raise ConfigError(f"input_dir={input_dir!r} was trained with {section}={old}, "
                              f"incompatible with this run's {section}={new}")


def carry_model(raw: dict, trainer: Trainer, state):
    """The networks of a run saved by another algorithm (raw arrays), placed into this trainer's fresh `state`."""
    template = trainer.model_params(state)
    if "theta" in raw:  # ES keeps its policy as one flat vector in the layout of ravel_pytree
        flat, unravel = ravel_pytree(template["policy"])
        if np.shape(raw["theta"]) != flat.shape:
            raise ConfigError(f"the saved ES policy has {np.size(raw['theta'])} parameters, this model {flat.size}")
        given = {"policy": unravel(jnp.asarray(raw["theta"]))}
    else:
        given = {k: v for k, v in raw["params"].items() if k in template}

    def fit(t, r):
        if np.shape(t) != np.shape(r):
            raise ConfigError(f"saved network shape {np.shape(r)} does not fit this model's {np.shape(t)}")
        return jnp.asarray(r, t.dtype)

    try:
        fitted = {k: jax.tree.map(fit, template[k], given[k]) for k in given}
    except ValueError as error:  # tree structures differ
        raise ConfigError(f"the saved networks do not fit this model: {str(error).splitlines()[0][:200]}") from None
    return trainer.with_model(state, fitted), sorted(fitted)


def restore(input_dir: str, trainer: Trainer, template, echo: Callable):
    """Latest state and progress of a previous run, plus its best state when it has one.

    A run of another algorithm hands over its networks only: optimizer state and counters start afresh."""
    store = open_for_resume(input_dir, LATEST)
    saved_algorithm = store.restore_meta().get("algorithm", trainer.name)
    if saved_algorithm != trainer.name:
        raw = store.restore_raw()
        store.close()
        state, networks = carry_model(raw, trainer, template)
        echo(f"Resumed the {' and '.join(networks)} of a {saved_algorithm} run from {input_dir}; "
             f"optimizer state, counters and best score restart for {trainer.name}", flush=True)
        return state, Progress(algorithm=trainer.name), None
    try:
        state, meta = store.restore(template)
        store.close()
        best = None
        if os.path.isdir(os.path.join(input_dir, BEST)):
            best_store = CheckpointDir(os.path.join(input_dir, BEST), read_only=True)
            if best_store.latest_step() is not None:
                best = best_store.restore(template)
            best_store.close()
    except Exception as error:  # Orbax and TensorStore raise many kinds; all mean "cannot use this checkpoint"
        first_line = (str(error).splitlines() or [""])[0][:200]
        raise ConfigError(f"input_dir={input_dir!r}: its checkpoint is corrupt or does not fit this "
                          f"env/model/algorithm ({type(error).__name__}: {first_line})") from None
    progress = Progress.from_meta(meta)
    progress.algorithm = trainer.name
    echo(f"Resumed {input_dir} at epoch {progress.epoch} (best {progress.best_score:.3f} "
         f"at epoch {progress.best_epoch})", flush=True)
    return trainer.with_hyperparams(state), progress, best


def save_model_summary(run_dir: str, params) -> None:
    """`model_summary.txt`: every parameter's path and shape, and the total count."""
    lines, total = [], 0
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        total += int(np.size(leaf))
        lines.append(f"{jax.tree_util.keystr(path):<60} {str(tuple(np.shape(leaf))):>16}")
    lines.append(f"total parameters: {total}")
    with open(os.path.join(run_dir, "model_summary.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


def final_evaluation_key(cfg: DictConfig) -> jax.Array:
    """The key of a run's final evaluation (a rollout of the run with this key reproduces it)."""
    return jax.random.fold_in(jax.random.key(int(cfg.seeding.env_base_seed)), 2**31 - 1)


def final_evaluation(programs: Programs, state, cfg: DictConfig, env_spec: EnvSpec, epoch: int, echo: Callable,
                     n_seeds: int = 1) -> dict:
    """Deterministic evaluation of `state`'s policy: `runner.final_eval_rollouts` episodes, printed."""
    n = read(cfg.runner, "final_eval_rollouts", int, "runner", low=1)
    returns, lengths = play_in_batches(programs.evaluate, state, final_evaluation_key(cfg), n)
    stats = across_seeds(episode_table(returns, lengths, "final", per_seed=n_seeds > 1))
    echo(format_table(epoch, epoch, stats).replace("Iteration", "Final evaluation of the best model, iteration"),
         flush=True)
    return stats


def describe_devices(cfg: DictConfig) -> str:
    """One line: the devices the batch is split over, and the processes."""
    from maze_jax.devices import read_n_devices

    n = read_n_devices(cfg.runner) or jax.device_count()
    processes = f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""
    split = f", batch split {n} ways" if n > 1 else ""
    return f"Devices: {n} x {jax.devices()[0].platform}{processes}{split}"


def enable_compilation_cache(path) -> None:
    """JAX's persistent compilation cache in `path` (None or "" = off): repeated runs skip most compilation."""
    if path:
        jax.config.update("jax_compilation_cache_dir", os.path.expanduser(str(path)))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)


class RunResult(NamedTuple):
    """What a training run leaves: final evaluation statistics, the latest and best states, and how to use them."""

    final: dict
    state: Any
    best_state: Any  # the latest state when no evaluation improved
    progress: Progress
    trainer: Trainer
    env_spec: EnvSpec
    programs: Programs


def run_training(cfg: DictConfig, run_dir: str, echo: Callable = print, env_spec: EnvSpec | None = None,
                 model=None) -> RunResult:
    """Trains as configured, writing table, TensorBoard, config and checkpoints to `run_dir`.

    `env_spec` and `model` (a flax module) replace the env and model configs when given. With several
    processes (jax.distributed) every process trains its share; only process 0 prints and writes files."""
    from tensorboardX import SummaryWriter

    enable_compilation_cache(cfg.get("compilation_cache_dir"))
    primary = jax.process_index() == 0
    if not primary:
        echo = lambda *args, **kwargs: None  # noqa: E731
    else:
        os.makedirs(run_dir, exist_ok=True)
    if cfg.input_dir:
        open_for_resume(str(cfg.input_dir), LATEST).close()  # has a checkpoint at all?
        check_compatible(str(cfg.input_dir), cfg)
    stored = stored_statistics(str(cfg.input_dir)) if cfg.input_dir else None
    env_spec, trainer = build(cfg, env_spec, model, stored, echo)  # config mistakes end here, in one line
    echo(OmegaConf.to_yaml(cfg), flush=True)
    echo(describe_devices(cfg), flush=True)
    if primary:
        OmegaConf.save(cfg, os.path.join(run_dir, CONFIG_FILE))

    programs = compile_programs(trainer, agent_key(cfg), echo)
    state = programs.init(agent_key(cfg))
    progress, best_state = Progress(algorithm=trainer.name), None
    if cfg.input_dir:
        fresh = state
        state, progress, best = restore(str(cfg.input_dir), trainer, state, echo)
        state = place_like(state, fresh)  # on the devices (and with the sharding) the programs expect
        best_state = place_like(best[0], fresh) if best else None
    statistics = normalization_statistics(env_spec)
    progress.normalization = statistics_to_meta(statistics) if statistics is not None else None
    params = trainer.policy_params(state)
    if primary:
        save_model_summary(run_dir, jax.tree.map(lambda x: x[0], params) if trainer.n_seeds > 1 else params)

    runner = cfg.runner
    threshold = env_spec.reward_threshold if read(runner, "stop_when_solved", bool, "runner") else None
    dump = read(runner, "dump_interval", int, "runner", low=0)
    options = LoopOptions(n_epochs=trainer.n_epochs, reward_threshold=threshold,
                          progress_interval_s=read(runner, "progress_interval_s", float, "runner", low=0.0),
                          checkpoint_every_s=read(runner, "checkpoint_every_s", float, "runner", low=0.0),
                          dump_interval=dump, patience=trainer.patience, n_seeds=trainer.n_seeds)
    if primary:
        latest = CheckpointDir(os.path.join(run_dir, LATEST), max_to_keep=1, keep_period=dump or None)
        best = CheckpointDir(os.path.join(run_dir, BEST), max_to_keep=1)
    else:
        latest, best = NoCheckpoints(os.path.join(run_dir, LATEST)), NoCheckpoints(os.path.join(run_dir, BEST))
    if best_state is not None and best.latest_step() != progress.best_epoch:  # stays the best until beaten
        best.save(progress.best_epoch, best_state, progress.to_meta())
    writer = SummaryWriter(run_dir) if primary else None
    if writer is not None:
        writer.add_text("hydra_config", "<pre>" + OmegaConf.to_yaml(cfg) + "</pre>")
    try:
        eval_key = jax.random.key(int(cfg.seeding.env_base_seed))
        loop = TrainingLoop(programs, options, latest, best, eval_key, writer, echo)
        state, progress, new_best, stop_reason = loop.run(state, progress)
        if stop_reason:
            raise RunStopped(stop_reason, os.path.join(run_dir, LATEST))
        best_state = place_like(new_best, state) if new_best is not None else best_state
        best_state = state if best_state is None else best_state  # no evaluation improved: the latest
        final = final_evaluation(programs, best_state, cfg, env_spec, progress.epoch, echo, trainer.n_seeds)
        for tag, value in final.items():
            if writer is not None and not math.isnan(value):
                writer.add_scalar(tag, value, progress.epoch)
    finally:
        if writer is not None:
            writer.close()
        latest.close()
        best.close()
    echo(f"Run directory: {os.path.abspath(run_dir)}", flush=True)
    return RunResult(final, state, best_state, progress, trainer, env_spec, programs)
