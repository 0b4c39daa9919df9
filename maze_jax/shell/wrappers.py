"""The `wrappers` config group: builds the wrapped env.

Python envs take gymnasium wrappers in Maze's format, by class path with their arguments, applied in order:

    gymnasium.wrappers.FlattenObservation: {}
    gymnasium.wrappers.TimeLimit: {max_episode_steps: 100}

and every env takes maze_jax's own, Maze's observation normalisation (applied after the gymnasium wrappers):

    observation_normalization:
      default_strategy: mean_zero_std_one      # or range_zero_one
      default_strategy_config: {clip_range: [null, null], axis: null}   # axis null: scalar statistics; [0]: per element
      default_statistics: null                 # e.g. {mean: 0, std: 1} for every key (not estimated)
      exclude: []                              # observation keys left as they are
      manual_config: {}                        # per key: strategy, strategy_config, statistics

Statistics come, in this order of priority, from the checkpoint of the run being resumed or rolled out, from
the config (manual_config, then default_statistics), or are estimated from `runner.normalization_samples`
observations of a random policy (masked, where the env has masks). They are saved in every checkpoint's metadata.
Bool observations and a structured env's `actor_id` are never normalised.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import jax
import numpy as np

from maze_jax.config import ConfigError, import_object
from maze_jax.envs import EnvSpec
from maze_jax.envs.episodes import play_episodes
from maze_jax.envs.make import python_env_spec
from maze_jax.envs.normalization import PLAIN_KEY, STRATEGIES, KeySettings, NormalizedObservations, compute_statistics
from maze_jax.envs.structured import ACTOR_ID
from maze_jax.models import RandomPolicy
from maze_jax.shell.collectors.host import sample_host_observations

WRAPPERS = ("observation_normalization",)
SAMPLING_ENVS = 32  # random-policy envs played side by side to collect the samples


def _key_settings(strategy: str, config: dict, strategy_key: str, where: str) -> KeySettings:
    """Settings of one key; `strategy_key` and `where` (the strategy config's path) name the keys in messages."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"{strategy_key}={strategy!r} is unknown. Valid: {', '.join(STRATEGIES)}")
    axis = config.get("axis")
    if axis is not None:
        axis = tuple([axis] if isinstance(axis, int) else axis)
        if 0 not in axis or not all(isinstance(a, int) and a >= 0 for a in axis):
            raise ConfigError(f"{where}.axis={list(axis)}: expected null or a list of axes including 0 (the sample axis)")
    clip = tuple(config.get("clip_range") or (None, None))
    if len(clip) != 2:
        raise ConfigError(f"{where}.clip_range={list(clip)}: expected [low, high] (null for no bound)")
    return KeySettings(strategy, axis, clip)


def _statistics(given: dict | None, settings: KeySettings, shape: tuple, where: str) -> dict | None:
    if given is None:
        return None
    names = STRATEGIES[settings.strategy]
    if set(given) != set(names):
        raise ConfigError(f"{where}: {settings.strategy} needs statistics {list(names)}, got {sorted(given)}")
    stats = {k: np.asarray(v, np.float32) for k, v in given.items()}
    for name, value in stats.items():
        try:
            np.broadcast_shapes(value.shape, shape)
        except ValueError:
            raise ConfigError(f"{where}.{name} of shape {value.shape} does not fit the observation's {shape}") from None
    return stats


def read_normalization(node: Any, obs_example) -> tuple[dict, dict]:
    """Per-key settings and the statistics the config gives, for the keys to normalise."""
    node = node or {}
    where = "wrappers.observation_normalization"
    unknown = set(node) - {"default_strategy", "default_strategy_config", "default_statistics", "exclude", "manual_config"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}")
    examples = obs_example if isinstance(obs_example, dict) else {PLAIN_KEY: obs_example}
    exclude, manual = list(node.get("exclude") or []), dict(node.get("manual_config") or {})
    for key in [*exclude, *manual]:
        if key not in examples:
            raise ConfigError(f"{where}: observation key {key!r} does not exist; the env's keys are {sorted(examples)}")
    default = _key_settings(node.get("default_strategy", "mean_zero_std_one"),
                            node.get("default_strategy_config") or {}, f"{where}.default_strategy",
                            f"{where}.default_strategy_config")
    settings, given = {}, {}
    for key, example in examples.items():
        if key in exclude or key == ACTOR_ID or example.dtype == bool:
            continue
        own = manual.get(key) or {}
        config = {**default._asdict(), **(own.get("strategy_config") or {})}
        own_where = f"{where}.manual_config.{key}"
        settings[key] = _key_settings(own.get("strategy", default.strategy), config, f"{own_where}.strategy",
                                      f"{own_where}.strategy_config")
        stats = own.get("statistics", node.get("default_statistics"))
        stats = _statistics(stats, settings[key], example.shape, f"{where}.manual_config.{key}.statistics")
        if stats is not None:
            given[key] = stats
    return settings, given


def sample_observations(env_spec: EnvSpec, n_samples: int, key: jax.Array) -> dict:
    """`n_samples` observations of a random policy (uniform over allowed actions), as {key: (n, *shape)}."""
    policy = RandomPolicy(env_spec)
    if env_spec.is_python:
        observations = sample_host_observations(env_spec, lambda obs, k: policy.act(None, obs, k, False), n_samples,
                                                key, SAMPLING_ENVS)
        return observations if isinstance(observations, dict) else {PLAIN_KEY: observations}
    n_steps = math.ceil(n_samples / SAMPLING_ENVS)
    play = jax.jit(lambda k: play_episodes(env_spec.env, env_spec.params, lambda obs, kk: policy.act(None, obs, kk, False),
                                           k, SAMPLING_ENVS, n_steps, record=True)[1].observation)
    observations = jax.device_get(play(key))
    flat = lambda x: np.asarray(x).reshape((-1,) + x.shape[2:])[:n_samples]
    observations = jax.tree.map(flat, observations)
    return observations if isinstance(observations, dict) else {PLAIN_KEY: observations}


def statistics_to_meta(statistics: dict) -> dict:
    """JSON-ready statistics (nested lists) for checkpoint metadata."""
    return {k: {name: np.asarray(v).tolist() for name, v in stats.items()} for k, stats in statistics.items()}


def wrap_env(env_spec: EnvSpec, wrappers: dict | None, stored: dict | None = None, n_samples: int = 10000,
             key: jax.Array | None = None, echo: Callable = print) -> EnvSpec:
    """The env wrapped as the `wrappers` group (a plain dict) says; unchanged without wrappers. `stored`
    statistics take priority; missing ones are estimated from `n_samples` random-policy observations drawn with
    `key` (default: key 0)."""
    wrappers = wrappers or {}
    env_spec = apply_python_wrappers(env_spec, python_wrappers({k: v for k, v in wrappers.items()
                                                                if k not in WRAPPERS}))
    if "observation_normalization" not in wrappers:
        return env_spec
    settings, statistics = read_normalization(wrappers["observation_normalization"], env_spec.observation_example())
    stored = {k: v for k, v in (stored or {}).items() if k in settings}
    statistics.update(stored)
    missing = [k for k in settings if k not in statistics]
    if missing:
        samples = sample_observations(env_spec, n_samples, jax.random.key(0) if key is None else key)
        statistics.update({k: compute_statistics(samples[k], settings[k]) for k in missing})
        echo(f"Observation normalisation: statistics of {', '.join(missing)} estimated from {n_samples} random-policy "
             "observations", flush=True)
    if stored:
        echo(f"Observation normalisation: statistics of {', '.join(stored)} restored from the checkpoint", flush=True)
    return env_spec._replace(env=NormalizedObservations(env_spec.env, settings, statistics))


def python_wrappers(node: dict) -> list[tuple[str, dict]]:
    """[(class path, arguments)] of the gymnasium wrappers in the `wrappers` group, in order. The command line
    splits dotted keys into nested ones (`+wrappers.gymnasium.wrappers.TimeLimit=...`): they are joined again."""
    found = []

    def walk(path: str, value) -> None:
        try:
            obj = import_object(path, "wrappers")
        except ConfigError:
            obj = None
        if callable(obj):
            found.append((path, dict(value or {})))
        elif isinstance(value, dict) and value:
            for key, inner in value.items():
                walk(f"{path}.{key}", inner)
        else:
            raise ConfigError(f"wrappers: {path!r} is not a wrapper class (a gymnasium wrapper's path, e.g. "
                              f"gymnasium.wrappers.FlattenObservation) nor one of {', '.join(WRAPPERS)}")

    for key, value in node.items():
        walk(key, value)
    return found


def wrapped_env(make, wrappers: list[tuple[str, dict]]):
    """One env built by `make`, wrapped by each gymnasium wrapper in turn (module-level: worker processes call it)."""
    env = make()
    for path, kwargs in wrappers:
        env = import_object(path, "wrappers")(env, **kwargs)
    return env


def apply_python_wrappers(env_spec: EnvSpec, wrappers: list[tuple[str, dict]]) -> EnvSpec:
    """The Python env with gymnasium wrappers applied to each of its copies; a JAX or envpool env refuses them."""
    if not wrappers:
        return env_spec
    names = ", ".join(path for path, _ in wrappers)
    if not env_spec.is_python or env_spec.env.envpool_id is not None:
        kind = "an envpool env" if env_spec.is_python else "a JAX env"
        raise ConfigError(f"wrappers {names}: gymnasium wrappers need a gymnasium env, and {env_spec.name} is {kind}: "
                          "use env=gymnasium")
    make = functools.partial(wrapped_env, env_spec.env.make_one, wrappers)
    return python_env_spec(make, env_spec.name, env_spec.reward_threshold)


def normalization_statistics(env_spec: EnvSpec) -> dict | None:
    """The statistics of a wrapped env (None without normalisation)."""
    return getattr(env_spec.env, "statistics", None) if isinstance(env_spec.env, NormalizedObservations) else None
