"""The border: a composed config (Hydra's DictConfig or any mapping) read once into typed, frozen settings.

Below this module no code sees the config tree: algorithms get `ESConfig` / `ActorCriticConfig`, the loop gets
`LoopSettings`, and the env, wrapper and model factories get plain dicts. Every value is range-checked here, and a
mistake is a `ConfigError` naming the exact key (`algorithm.lr=-1.0: must be > 0.0`).

An algorithm config names its reader by `_target_`: `(algorithm: dict, runner: dict) -> settings`. The settings
of an algorithm of one's own need `name`, `n_epochs`, `patience` and `build(env_spec, model, critic, losses)`
returning an `Algorithm` (see `maze_jax.shell.assembly.build_algorithm`).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Mapping, NamedTuple

from maze_jax.algorithms.actor_critic import ActorCriticConfig
from maze_jax.algorithms.es import ESConfig
from maze_jax.algorithms.impala import ImpalaConfig
from maze_jax.algorithms.sac import SACConfig
from maze_jax.collectors.devices import check_divisible, make_mesh, read_n_devices
from maze_jax.config import CONFIG_DIR, MAX_SEED, ConfigError, did_you_mean, first_line, import_object, read
from maze_jax.shell.collectors.vector_env import MODES, Vectorization
from maze_jax.shell.grid import read_grid
from maze_jax.shell.pbt import read_pbt

CONFIG_FILE = "hydra_config.yaml"  # a run directory's resolved config


@dataclass(frozen=True)
class RaySettings:
    """The `runner=ray` keys: workers, envs per worker, the cluster to join (None: start a local Ray), the worker
    failures a run survives, the CPUs Ray reserves per worker, and how long workers may take to start."""

    num_workers: int = 2
    envs_per_worker: int = 8
    address: str | None = None
    max_worker_restarts: int = 3
    cpus_per_worker: float = 1.0
    start_timeout_s: float = 120.0


class HostSettings(NamedTuple):
    """How the host collector runs (the runner's keys): envs per seed for ES, gymnasium's vectorisation (sync:
    in the training process; async: a worker process per env), the actor's policy lag (0 or 1), and with
    `runner=ray` the Ray workers' settings (`RaySettings`; None: envs in this process)."""

    n_envs: int = 16
    vectorization: Vectorization = Vectorization()
    policy_lag: int = 1
    ray: Any = None


@dataclass(frozen=True)
class LoopSettings:
    """How the host loop runs epochs and keeps checkpoints (the `runner` group's keys)."""

    stop_when_solved: bool = True
    """Stop once the evaluation mean reaches the env's reward threshold."""
    progress_interval_s: float = 5.0
    """Print a progress line when one epoch runs longer than this many seconds."""
    checkpoint_every_s: float = 10.0
    """Write the latest checkpoint (and the best, if it improved) at most this often, and always at the end."""
    dump_interval: int = 0
    """Keep an extra checkpoint every dump_interval epochs (0 = only latest and best)."""
    final_eval_rollouts: int = 100
    """Deterministic episodes of the best model after training."""
    table: str = "full"
    """The console after each epoch: Maze's full table, or one compact line (long runs)."""
    evaluate_each_epoch: bool = True
    """Evaluate after every epoch and select the best model by it; false (Maze's `rollout_evaluator.n_episodes=0`)
    selects by the epoch's mean training return instead."""


@dataclass(frozen=True)
class RunSettings:
    """Everything one training run reads from its config."""

    algorithm: Any
    """ESConfig, ActorCriticConfig, or the settings of an algorithm of one's own."""
    loop: LoopSettings
    n_seeds: int = 1
    """Independent trainings in one compiled program (vmap over seeds)."""
    grid: Any = None
    """A grid of traced hyperparameters (`shell.grid.Grid`), each configuration trained with `n_seeds` seeds in the
    same program; None: the algorithm's own values."""
    pbt: Any = None
    """Population-based training of the `n_seeds` members (`shell.pbt.PbtSettings`); None: none."""
    host: HostSettings = HostSettings()
    """How Python envs are stepped (runner.concurrency, vectorization, policy_lag)."""
    normalization_samples: int = 10000
    """Random-policy observations the normalisation statistics are estimated from."""
    env: Mapping | None = None
    """The env group: its factory's `_target_` and arguments."""
    wrappers: Mapping | None = None
    model: Mapping | None = None
    critic: Mapping | None = None
    input_dir: str = ""
    """A run directory to resume from ("" = a fresh run)."""
    agent_seed: int | None = None
    env_seed: int | None = None
    compilation_cache_dir: str = ""
    logger: Mapping | None = None
    """The `logger` group (`+logger=mlflow`): a tracker besides TensorBoard."""


# Hydra plugins the experiments use, installed by the `sweep` extra.
PLUGINS = {"hydra/launcher/joblib": "joblib launcher", "hydra/sweeper/optuna": "Optuna sweeper"}


def hydra_error_line(error: BaseException) -> str:
    """Hydra's multi-line report of a composition error as one line, with a "did you mean" where a name is close."""
    from hydra.errors import MissingConfigException, OverrideParseException
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(error, MissingConfigException) and "/" in str(error.missing_cfg_file or ""):
        group, _, option = str(error.missing_cfg_file).rpartition("/")
        options = list(error.options or [])
        if f"{group}/{option}" in PLUGINS:
            return (f"{group}={option} needs Hydra's {PLUGINS[group + '/' + option]} plugin: "
                    f"pip install \"maze-jax[sweep]\"")
        close = did_you_mean(option, options, group + "=")
        own = "" if close else (f"; a config of your own ({group}/{option}.yaml in a folder conf/) needs "
                                f"--config-dir conf")
        return (f"Could not find '{group}/{option}': {group}={option} is not an option. Available options in "
                f"'{group}': {', '.join(options)}{close}{own}")
    if isinstance(error, OverrideParseException):
        return f"{error.override}: not a valid override ({first_line(error)})"
    cause = error.__cause__
    if isinstance(cause, OmegaConfBaseException) and getattr(cause, "full_key", None):
        parent = getattr(cause, "parent_node", None)
        keys = leaf_keys(OmegaConf.to_container(parent)) if isinstance(parent, DictConfig) else []
        where = str(cause.full_key).rpartition(".")[0]
        hint = did_you_mean(str(cause.key), keys, where + "." if where else "")
        # keys added to these groups reach a constructor (env, model, critic) or name a wrapper; the algorithm,
        # runner and seeding read only their own settings (read_algorithm, check_known_keys)
        group = str(cause.full_key).split(".")[0]
        adding = f" (+{cause.full_key}=... adds a new key)" if group in ("env", "model", "critic", "wrappers") else ""
        return f"Could not override '{cause.full_key}': Key '{cause.key}' is not in struct{hint}{adding}"
    return " ".join(line.strip() for line in str(error).split("\nConfig search path")[0].splitlines() if line.strip())


def compose_config(overrides: list[str] = ()) -> tuple[Any, dict]:
    """The training config for command-line style `overrides` (as `python -m maze_jax.train` would compose it),
    and its group choices, e.g. `compose_config(["env=cartpole", "algorithm=ppo"])`. Seeds stay as given. A
    misspelt option or key, or a malformed override, raises a one-line ConfigError, as the command line says it."""

    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import open_dict
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(CONFIG_DIR, version_base=None):
            cfg = compose("conf_train", overrides=list(overrides), return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as error:  # as the command line says it, in one line
        raise ConfigError(hydra_error_line(error)) from None
    choices = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, choices


def load_yaml(path: str, what: str):
    """A YAML mapping from a run directory, or a ConfigError naming the file and what is wrong with it."""
    import os

    from omegaconf import OmegaConf

    if not os.path.isfile(path):
        raise ConfigError(f"{what}: {os.path.basename(path)} is missing (not a maze_jax run directory?)")
    try:
        loaded = OmegaConf.load(path)
    except Exception as error:  # YAML syntax of all kinds, unreadable bytes
        raise ConfigError(f"{what}: {path} is not valid YAML ({type(error).__name__}: {first_line(error)})") from None
    if not OmegaConf.is_dict(loaded):
        raise ConfigError(f"{what}: {path} does not hold a mapping")
    if not loaded:
        raise ConfigError(f"{what}: {path} is empty (not a maze_jax run directory, or its files were emptied)")
    return loaded


def plain(node) -> Any:
    """A config node as plain Python containers (dicts, lists), interpolations resolved."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def _n_epochs_and_patience(a: Mapping) -> dict:
    return {"n_epochs": read(a, "n_epochs", int, "algorithm", low=0),
            "patience": read(a, "patience", int, "algorithm", low=0) if "patience" in a else 0}


def es(algorithm: Mapping, runner: Mapping) -> ESConfig:
    """ES settings from Maze's ES names (`algorithm=es`)."""
    a, where = algorithm, "algorithm"
    population = read(a, "n_rollouts_per_update", int, where, low=2, even=True)
    opt = a.get("optimizer") or {}
    mesh = make_mesh(read_n_devices(runner))
    check_divisible(population, mesh, "algorithm.n_rollouts_per_update")
    return ESConfig(
        population=population,
        n_timesteps_per_update=read(a, "n_timesteps_per_update", int, where, low=0),
        max_steps=read(a, "max_steps", int, where, low=0),
        n_eval_episodes=read(runner, "n_eval_rollouts", int, "runner", low=1),
        optimizer=str(opt.get("name", "adam")),
        deterministic=read(a, "deterministic", bool, where) if "deterministic" in a else True,
        step_size=read(opt, "step_size", float, f"{where}.optimizer", low=0.0, low_inclusive=False),
        noise_stddev=read(a, "noise_stddev", float, where, low=0.0, low_inclusive=False),
        l2_penalty=read(a, "l2_penalty", float, where, low=0.0),
        mesh=mesh, **_n_epochs_and_patience(a))


def _n_envs(algorithm: Mapping, runner: Mapping, key: str, where: str) -> int:
    """The envs a rollout steps: every Ray worker's envs of a seed with runner=ray, else `<where>.<key>`."""
    ray, source = read_ray(runner), algorithm if where == "algorithm" else runner
    if ray:  # the workers' envs replace the setting, which is still checked
        if key in source:
            read(source, key, int, where, low=1)
        return ray.num_workers * ray.envs_per_worker // read(runner, "n_seeds", int, "runner", low=1)
    return read(source, key, int, where, low=1)


NO_EVALUATOR_BATCH = 8
"""Episodes per batch of the final evaluation when `rollout_evaluator.n_episodes=0` turns per-epoch evaluation off."""


def _evaluator(a: Mapping) -> dict:
    """`rollout_evaluator`'s settings; `n_episodes=0` (Maze: no evaluator) keeps a batch size for the final
    evaluation (see `LoopSettings.evaluate_each_epoch`)."""
    evaluator = a.get("rollout_evaluator") or {}
    n_episodes = read(evaluator, "n_episodes", int, "algorithm.rollout_evaluator", low=0)
    return {"n_eval_episodes": n_episodes or NO_EVALUATOR_BATCH,
            "deterministic_eval": read(evaluator, "deterministic", bool, "algorithm.rollout_evaluator")}


def _actor_critic(algorithm: Mapping, runner: Mapping, ppo: bool) -> ActorCriticConfig:
    a, where = algorithm, "algorithm"
    n_envs = _n_envs(a, runner, "concurrency", "runner")
    n_steps = read(a, "n_rollout_steps", int, where, low=1)
    extra = {}
    if ppo:
        batch_size = read(a, "batch_size", int, where, low=1)
        if (n_envs * n_steps) % batch_size:
            raise ConfigError(f"algorithm.batch_size={batch_size} does not divide the rollout of runner.concurrency "
                              f"x algorithm.n_rollout_steps = {n_envs} x {n_steps} = {n_envs * n_steps}")
        extra = {"batch_size": batch_size, "clip_range": read(a, "clip_range", float, where, low=0.0),
                 "n_optimization_epochs": read(a, "n_optimization_epochs", int, where, low=1)}
    mesh = make_mesh(read_n_devices(runner))
    check_divisible(n_envs, mesh, "runner.concurrency")
    coefficients = {name: read(a, name, float, where, low=0.0, high=1.0 if name in ("gamma", "gae_lambda") else None)
                    for name in ("gamma", "gae_lambda", "policy_loss_coef", "value_loss_coef", "entropy_coef",
                                 "max_grad_norm")}
    return ActorCriticConfig(
        ppo=ppo, n_envs=n_envs, n_rollout_steps=n_steps,
        epoch_length=read(a, "epoch_length", int, where, low=1),
        lr=read(a, "lr", float, where, low=0.0, low_inclusive=False),
        critic_burn_in_epochs=read(a, "critic_burn_in_epochs", int, where, low=0),
        sequence_length=None if a.get("sequence_length") is None else read(a, "sequence_length", int, where, low=1),
        mesh=mesh, **coefficients, **extra, **_evaluator(a), **_n_epochs_and_patience(a))


def ppo(algorithm: Mapping, runner: Mapping) -> ActorCriticConfig:
    """PPO settings from Maze's actor-critic names (`algorithm=ppo`)."""
    return _actor_critic(algorithm, runner, True)


def a2c(algorithm: Mapping, runner: Mapping) -> ActorCriticConfig:
    """A2C settings from Maze's actor-critic names (`algorithm=a2c`)."""
    return _actor_critic(algorithm, runner, False)


def _random_sampling(a: Mapping) -> bool:
    """`initial_sampling_policy`: uniformly random (a `_target_` naming a random policy, Maze's default) or null
    (the fresh policy itself)."""
    sampling = a.get("initial_sampling_policy")
    if sampling is None:
        return False
    target = str(sampling.get("_target_", "") if isinstance(sampling, Mapping) else sampling)
    if "random" not in target.rpartition(".")[2].lower():
        raise ConfigError(f"algorithm.initial_sampling_policy={target!r}: expected a random policy "
                          f"(maze_jax.trained_policy.random_policy, as Maze's RandomPolicy) or null (the fresh policy)")
    return True


def sac(algorithm: Mapping, runner: Mapping) -> SACConfig:
    """SAC settings from Maze's SAC names (`algorithm=sac`)."""
    a, where = algorithm, "algorithm"
    if a.get("split_rollouts_into_transitions", True) is not True:
        raise ConfigError("algorithm.split_rollouts_into_transitions=false (whole rollouts as buffer items, each "
                          "still learned from as 1-step transitions) is not supported: every step is a transition")
    if a.get("initial_demonstration_trajectories"):
        raise ConfigError("algorithm.initial_demonstration_trajectories (SACfD) is not supported yet: the buffer "
                          "fills from the initial sampling policy")
    n_envs = _n_envs(a, runner, "num_actors", where)
    mesh = make_mesh(read_n_devices(runner))
    check_divisible(n_envs, mesh, "algorithm.num_actors")
    rates = {name: read(a, name, float, where, low=0.0, low_inclusive=False) for name in ("lr", "entropy_coef_lr")}
    coefficients = {name: read(a, name, float, where, low=0.0, high=1.0 if name in ("gamma", "tau") else None)
                    for name in ("gamma", "tau", "entropy_coef", "target_entropy_multiplier", "max_grad_norm")}
    return SACConfig(
        n_envs=n_envs,
        n_rollout_steps=read(a, "n_rollout_steps", int, where, low=1)
        * (read(a, "rollouts_per_iteration", int, where, low=1) if "rollouts_per_iteration" in a else 1),
        epoch_length=read(a, "epoch_length", int, where, low=1),
        num_batches_per_iter=read(a, "num_batches_per_iter", int, where, low=1),
        batch_size=read(a, "batch_size", int, where, low=1),
        replay_buffer_size=read(a, "replay_buffer_size", int, where, low=1),
        initial_buffer_size=read(a, "initial_buffer_size", int, where, low=0),
        random_initial_policy=_random_sampling(a),
        entropy_tuning=read(a, "entropy_tuning", bool, where),
        target_update_interval=read(a, "target_update_interval", int, where, low=1),
        mesh=mesh, **rates, **coefficients, **_evaluator(a), **_n_epochs_and_patience(a))


def impala(algorithm: Mapping, runner: Mapping) -> ImpalaConfig:
    """IMPALA settings from Maze's IMPALA names (`algorithm=impala`). `num_actors` and `queue_out_of_sync_factor`
    are read and checked, but the actor/learner split is the runner's: the host collector's actor thread
    (`runner.policy_lag`) or Ray's workers (`runner=ray`); `n_training_seeds` is unused, as in Maze."""
    a, where = algorithm, "algorithm"
    for key in ("num_actors", "n_training_seeds"):
        if key in a:
            read(a, key, int, where, low=1)
    if "queue_out_of_sync_factor" in a:
        read(a, "queue_out_of_sync_factor", float, where, low=0.0, low_inclusive=False)
    n_envs = _n_envs(a, runner, "actors_batch_size", where)
    mesh = make_mesh(read_n_devices(runner))
    check_divisible(n_envs, mesh, "algorithm.actors_batch_size")
    clips = {name: float("inf") if a.get(name) is None else read(a, name, float, where, low=0.0, low_inclusive=False)
             for name in ("vtrace_clip_rho_threshold", "vtrace_clip_pg_rho_threshold")}
    coefficients = {name: read(a, name, float, where, low=0.0, high=1.0 if name == "gamma" else None)
                    for name in ("gamma", "policy_loss_coef", "value_loss_coef", "entropy_coef", "max_grad_norm")}
    return ImpalaConfig(
        n_envs=n_envs, n_rollout_steps=read(a, "n_rollout_steps", int, where, low=1),
        epoch_length=read(a, "epoch_length", int, where, low=1),
        lr=read(a, "lr", float, where, low=0.0, low_inclusive=False),
        critic_burn_in_epochs=read(a, "critic_burn_in_epochs", int, where, low=0),
        mesh=mesh, **clips, **coefficients, **_evaluator(a), **_n_epochs_and_patience(a))


OLD_READERS = "maze_jax.settings."  # where the algorithm readers lived before maze_jax/shell/


def read_algorithm(algorithm: Mapping, runner: Mapping):
    """The settings of the algorithm the config names by `_target_` (a reader such as `maze_jax.shell.settings.ppo`)."""
    target = algorithm.get("_target_")
    if not target:
        raise ConfigError("algorithm._target_ is missing: an algorithm config names its settings reader, "
                          "e.g. maze_jax.shell.settings.ppo")
    if str(target).startswith(OLD_READERS):  # a run directory saved before the readers moved into the shell
        target = "maze_jax.shell.settings." + str(target).rpartition(".")[2]
    reader = import_object(target, "algorithm._target_")
    fields, read_keys = {k: v for k, v in algorithm.items() if k != "_target_"}, set()
    settings = reader(KeysRead(fields, read_keys), runner)
    unread = [key for key in leaf_keys(fields) if key not in read_keys]
    if unread:  # a key added with +algorithm.<key>=..., which nothing would read
        name = str(target).rpartition(".")[2]
        raise ConfigError(f"algorithm.{unread[0]} is not a setting of algorithm={name}"
                          f"{did_you_mean(unread[0], [k for k in leaf_keys(fields) if k not in unread], 'algorithm.')}")
    return settings


class KeysRead(Mapping):
    """A config mapping that notes the dotted path of every key a reader asks for (`[]`, `get`, `in`), nested
    mappings too, so that `read_algorithm` can name a key no reader reads."""

    def __init__(self, node: Mapping, read_keys: set, prefix: str = ""):
        self._node, self._read, self._prefix = node, read_keys, prefix

    def __getitem__(self, key):
        self._read.add(self._prefix + str(key))
        value = self._node[key]
        return KeysRead(value, self._read, f"{self._prefix}{key}.") if isinstance(value, Mapping) else value

    def __contains__(self, key) -> bool:
        self._read.add(self._prefix + str(key))
        return key in self._node

    def __iter__(self):
        return iter(self._node)

    def __len__(self) -> int:
        return len(self._node)


def leaf_keys(node: Mapping, prefix: str = "") -> list[str]:
    """The dotted paths of a nested mapping's leaves (an empty mapping counts as a leaf)."""
    keys = []
    for key, value in node.items():
        path = f"{prefix}{key}"
        keys += leaf_keys(value, path + ".") if isinstance(value, Mapping) and value else [path]
    return keys


def read_loop(runner: Mapping) -> LoopSettings:
    """The loop's settings from the `runner` group."""
    return LoopSettings(
        stop_when_solved=read(runner, "stop_when_solved", bool, "runner"),
        progress_interval_s=read(runner, "progress_interval_s", float, "runner", low=0.0),
        checkpoint_every_s=read(runner, "checkpoint_every_s", float, "runner", low=0.0),
        dump_interval=read(runner, "dump_interval", int, "runner", low=0),
        final_eval_rollouts=read(runner, "final_eval_rollouts", int, "runner", low=1),
        table=read_table(runner))


def read_table(runner: Mapping) -> str:
    """`runner.table`: full (default where a runner config lacks it) or compact."""
    table = str(runner.get("table", "full"))
    if table not in ("full", "compact"):
        raise ConfigError(f"runner.table={table!r} is unknown. Valid: full, compact")
    return table


def read_host(runner: Mapping) -> HostSettings:
    """The host collector's settings from the `runner` group (defaults where a runner config lacks them)."""
    defaults = HostSettings()
    mode = str(runner.get("vectorization", defaults.vectorization.mode))
    if mode not in MODES:
        raise ConfigError(f"runner.vectorization={mode!r} is unknown. Valid: {', '.join(MODES)}")
    timeout = runner.get("env_step_timeout_s", defaults.vectorization.timeout_s)
    timeout = None if timeout is None else read(runner, "env_step_timeout_s", float, "runner", low=0.0,
                                                 low_inclusive=False)
    ray = read_ray(runner)
    return HostSettings(
        n_envs=ray.envs_per_worker if ray else
        read(runner, "concurrency", int, "runner", low=1) if "concurrency" in runner else defaults.n_envs,
        vectorization=Vectorization(mode, timeout),
        policy_lag=read(runner, "policy_lag", int, "runner", low=0, high=1) if "policy_lag" in runner
        else defaults.policy_lag,
        ray=ray)


def read_ray(runner: Mapping) -> RaySettings | None:
    """`runner=ray`'s settings (None for the other runners, which have no `num_workers`); Ray must be installed."""
    import importlib.util

    if "num_workers" not in runner:
        return None
    where = "runner"
    settings = RaySettings(
        num_workers=read(runner, "num_workers", int, where, low=1),
        envs_per_worker=read(runner, "envs_per_worker", int, where, low=1),
        address=str(runner["address"]) if runner.get("address") not in (None, "") else None,
        max_worker_restarts=read(runner, "max_worker_restarts", int, where, low=0),
        cpus_per_worker=read(runner, "cpus_per_worker", float, where, low=0.0),
        start_timeout_s=read(runner, "start_timeout_s", float, where, low=0.0, low_inclusive=False))
    n_seeds = read(runner, "n_seeds", int, where, low=1)
    if settings.num_workers % n_seeds:
        raise ConfigError(f"runner.num_workers={settings.num_workers} is not a multiple of runner.n_seeds={n_seeds}: "
                          f"a Ray worker serves one seed")
    if importlib.util.find_spec("ray") is None:
        raise ConfigError('runner=ray needs Ray: pip install "maze-jax[ray]"')
    return settings


def read_settings(cfg) -> RunSettings:
    """A whole composed training config, read and checked."""
    cfg = plain(cfg)
    for group, example in (("env", "env=gym_env"), ("model", "model=flatten_concat"), ("algorithm", "algorithm=es"),
                           ("runner", "runner=local")):
        if not cfg.get(group):
            raise ConfigError(f"{group} is missing (removed with ~{group}?): a run needs one, e.g. {example}")
    runner, seeding = cfg.get("runner") or {}, cfg.get("seeding") or {}
    if "n_episodes" in runner and "n_eval_rollouts" not in runner:
        raise ConfigError("runner: a rollout runner (runner=sequential or parallel: python -m maze_jax.rollout) "
                          "cannot train; training takes runner=local, dev, distributed or ray")
    check_known_keys(runner, "runner", runner_keys())
    check_known_keys(seeding, "seeding", ("env_base_seed", "agent_base_seed"))
    evaluator = (cfg.get("algorithm") or {}).get("rollout_evaluator") or {}
    grid = read_grid(cfg.get("grid"), cfg.get("algorithm") or {}, runner, read_algorithm)
    if grid is not None and read_ray(runner):
        raise ConfigError("grid: runner=ray trains one configuration per run; a grid trains on runner=local, dev or "
                          "distributed (or sweep with --multirun)")
    algorithm = read_algorithm(cfg.get("algorithm") or {}, runner)
    n_seeds = read(runner, "n_seeds", int, "runner", low=1)
    pbt = read_pbt(cfg.get("pbt"), cfg.get("algorithm") or {}, algorithm, n_seeds)
    if pbt is not None and grid is not None:
        raise ConfigError("pbt and grid: population-based training explores the hyperparameters itself, from a "
                          "population of runner.n_seeds members; leave out the grid")
    return RunSettings(
        algorithm=algorithm, grid=grid, pbt=pbt,
        loop=dataclasses.replace(read_loop(runner), evaluate_each_epoch=evaluator.get("n_episodes") != 0),
        n_seeds=n_seeds,
        host=read_host(runner),
        normalization_samples=read(runner, "normalization_samples", int, "runner", low=1),
        env=cfg.get("env"), wrappers=cfg.get("wrappers") or {}, model=cfg.get("model"), critic=cfg.get("critic"),
        input_dir=str(cfg.get("input_dir") or ""),
        agent_seed=seeding.get("agent_base_seed"), env_seed=seeding.get("env_base_seed"),
        compilation_cache_dir=str(cfg.get("compilation_cache_dir") or ""),
        logger=read_logger(cfg.get("logger")))


TRAINING_RUNNERS = ("local", "dev", "distributed", "ray")
ROLLOUT_RUNNERS = ("parallel", "sequential")


def runner_keys(names: tuple = TRAINING_RUNNERS) -> set:
    """Every key of these runner configs (conf/runner/): what some part of a training run (or a rollout) reads."""
    from omegaconf import OmegaConf

    return {key for name in names for key in OmegaConf.load(os.path.join(CONFIG_DIR, "runner", f"{name}.yaml"))}


def check_known_keys(node: Mapping, group: str, known) -> None:
    """A key added to `group` (`+runner.foo=1`) that nothing reads is one line, with the closest known key."""
    unknown = sorted(set(node) - set(known))
    if unknown:
        raise ConfigError(f"{group}.{unknown[0]} is not a setting of {group}"
                          f"{did_you_mean(unknown[0], sorted(known), group + '.')}")


def read_logger(logger: Mapping | None) -> Mapping | None:
    """The `logger` group, checked before anything is built: a known tracker whose package is installed."""
    import importlib.util

    if not logger:
        return None
    kind = str(logger.get("kind", ""))
    if kind != "mlflow":
        raise ConfigError(f"logger.kind={kind!r} is unknown. Valid: mlflow")
    if importlib.util.find_spec("mlflow") is None:
        raise ConfigError('+logger=mlflow needs MLflow: pip install "maze-jax[mlflow]"')
    return logger


def draw_seeds(cfg) -> None:
    """Fills null seeds with random ones (written back, so the saved config reproduces the run).

    With several processes, process 0's seeds are used by all."""
    import secrets
    import sys

    keys = ("env_base_seed", "agent_base_seed")
    for key in keys:
        if cfg.seeding.get(key) is None:
            cfg.seeding[key] = secrets.randbelow(2**31)
        else:
            read(cfg.seeding, key, int, "seeding", low=0, high=MAX_SEED)
    if "jax" in sys.modules and sys.modules["jax"].process_count() > 1:
        import numpy as np
        from jax.experimental import multihost_utils

        shared = multihost_utils.broadcast_one_to_all(np.array([cfg.seeding[k] for k in keys], np.int64))
        for key, seed in zip(keys, np.asarray(shared).tolist()):
            cfg.seeding[key] = int(seed)
