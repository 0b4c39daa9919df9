"""`env.name` to an environment, as Maze's `gym_env` takes it: a gymnax id (pure JAX, the fastest path), else an
envpool id (when envpool is installed), else a gymnasium id, also in gymnasium's `module:Id` form that imports the
package registering it (`minigrid:MiniGrid-Empty-8x8-v0`).

A gymnasium id that the installed gymnasium only knows in another version (`LunarLander-v2`, while gymnasium 1.x
has `LunarLander-v3`) takes the newest registered version, and says so in one line.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.util
import os
import re
from typing import Any, Callable

from maze_jax.config import ConfigError, env_label, first_line, import_object
from maze_jax.envs.gymnax_env import EnvSpec, gymnax_ids, make_gymnax, read_episode_cap, read_threshold
from maze_jax.envs.python_env import PythonEnv

BACKENDS = ("auto", "gymnax", "envpool", "gymnasium")


def envpool_ids() -> set[str]:
    """The ids envpool offers (empty when it is not installed)."""
    if importlib.util.find_spec("envpool") is None:
        return set()
    import envpool

    return set(envpool.list_all_envs())


# envpool's settings that maze_jax sets itself (the batch, threads, seeds, env.max_episode_steps)
ENVPOOL_OWN = frozenset({"num_envs", "batch_size", "num_threads", "max_num_players", "thread_affinity_offset",
                         "base_path", "seed", "env_seed", "gym_reset_return_info", "max_episode_steps"})


def envpool_settings(env_id: str) -> set[str]:
    """The constructor arguments envpool's `env_id` takes (its config's keys)."""
    import envpool

    return set(envpool.make_spec(env_id)._config_keys)


def gymnasium_ids() -> set[str]:
    import gymnasium

    return set(gymnasium.registry)


def newest_version(env_id: str, registered: set[str]) -> str | None:
    """The newest registered version of `env_id`'s name (`LunarLander-v2` -> `LunarLander-v3`), if any."""
    match = re.fullmatch(r"(.+)-v(\d+)", env_id)
    if not match:
        return None
    versions = [int(m.group(1)) for k in registered if (m := re.fullmatch(re.escape(match.group(1)) + r"-v(\d+)", k))]
    return f"{match.group(1)}-v{max(versions)}" if versions else None


def trained_id(name: Any, backend: str = "auto") -> Any:
    """The id `make_env(name, backend=backend)` trains on, found without building the env: `name` itself, or the
    newest gymnasium version of an id that nothing offers in its typed version (`LunarLander-v2` -> `-v3` when
    neither gymnax nor envpool has `-v2`). Names the run directory after the env that trains."""
    module, _, env_id = str(name).rpartition(":")
    if backend not in ("auto", "gymnasium") or not re.fullmatch(r".+-v\d+", env_id):
        return name
    if not module and backend == "auto" and (env_id in gymnax_ids() or env_id in envpool_ids()):
        return name
    try:
        if module:
            importlib.import_module(module)  # the package that registers the id, as make_env imports it
    except Exception:  # make_env says why
        return name
    registered = gymnasium_ids()
    newer = newest_version(env_id, registered) if env_id not in registered else None
    return f"{module}:{newer}" if newer and module else newer or name


def run_label(name: Any, group: str, backend: str = "auto", target: str = "") -> str:
    """The env part of a run directory's name (`env_label`), after the env that trains: for `make_env`'s configs,
    its `trained_id`."""
    if target in ("maze_jax.envs.make_env", "maze_jax.envs.make.make_env"):
        name = trained_id(name, backend)
    return env_label(name, group)


def make_gymnasium_env(env_id: str, kwargs: dict, max_episode_steps: int | None, module: str = ""):
    """One gymnasium env (module-level, so that a spawned worker process can build it too, importing `module`
    first, the package that registers the id)."""
    import gymnasium

    if module:
        importlib.import_module(module)
    return gymnasium.make(env_id, max_episode_steps=max_episode_steps, **kwargs)


def python_env_spec(make: Callable, name: str, reward_threshold: Any = "auto", envpool_id: str | None = None,
                    envpool_kwargs: dict | None = None) -> EnvSpec:
    """The EnvSpec of a Python env that `make()` builds; "auto" takes the env's own reward threshold."""
    try:
        env = PythonEnv(make, name, envpool_id, envpool_kwargs)
    except ConfigError:
        raise
    except Exception as error:  # the env's own constructor or reset failed
        raise ConfigError(f"env {name!r} could not be built: {type(error).__name__}: {first_line(error)}") from None
    return EnvSpec(env, None, name, read_threshold(reward_threshold, env.reward_threshold))


def make_env(name: str, kwargs: dict | None = None, max_episode_steps: int | None = None,
             reward_threshold: Any = "auto", backend: str = "auto", echo: Callable = print) -> EnvSpec:
    """The `env` factory of `env=gym_env` (backend auto) and `env=gymnasium` (backend gymnasium): `name` resolved
    in the order gymnax, envpool, gymnasium; `kwargs` go to the env's constructor."""
    kwargs = kwargs if kwargs is not None else {}
    if backend not in BACKENDS:
        raise ConfigError(f"env.backend={backend!r} is unknown. Valid: {', '.join(BACKENDS)}")
    if backend == "envpool" and importlib.util.find_spec("envpool") is None:
        raise ConfigError("env.backend=envpool: envpool is not installed (pip install '.[envpool]')")
    max_episode_steps = read_episode_cap(max_episode_steps)
    if not isinstance(kwargs, dict):
        raise ConfigError(f"env.kwargs={kwargs!r}: expected a mapping of constructor arguments")
    module, _, env_id = str(name).rpartition(":")
    if not module and backend in ("auto", "gymnax") and env_id in gymnax_ids():
        if kwargs:
            raise ConfigError(f"env.kwargs: {env_id} is a gymnax env, whose settings are env.max_episode_steps and "
                              "env.reward_threshold; use env=gymnasium for gymnasium's constructor arguments")
        return make_gymnax(env_id, max_episode_steps, reward_threshold)
    if not module and backend in ("auto", "envpool") and env_id in envpool_ids():
        if not (unknown := sorted(set(kwargs) - envpool_settings(env_id))):
            make = functools.partial(_make_envpool_probe, env_id, kwargs, max_episode_steps)
            extra = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
            return python_env_spec(make, env_id, reward_threshold, env_id, {**kwargs, **extra})
        if backend == "envpool" or env_id not in gymnasium_ids():
            valid = ", ".join(sorted(envpool_settings(env_id) - ENVPOOL_OWN)) or "none"
            raise ConfigError(f"env.kwargs: {', '.join(unknown)} is not a setting of envpool's {env_id}. "
                              f"Valid: {valid}")
        echo(f"env.kwargs: {', '.join(unknown)} is not a setting of envpool's {env_id}: building gymnasium's",
             flush=True)
    if backend in ("auto", "gymnasium"):
        if module:
            try:
                imported = importlib.import_module(module)
            except Exception as error:
                where = (f"; run from {os.getcwd()}, where a module of your own is found (or put its folder on "
                         "PYTHONPATH)") if isinstance(error, ModuleNotFoundError) and error.name == module else ""
                raise ConfigError(f"env.name={name!r}: module {module!r} cannot be imported "
                                  f"({type(error).__name__}: {first_line(error)}){where}") from None
        registered = gymnasium_ids()
        if env_id not in registered and (newer := newest_version(env_id, registered)):
            echo(f"env.name={env_id}: this gymnasium has {newer} only; training on {newer}", flush=True)
            env_id = newer
        if env_id in registered:
            make = functools.partial(make_gymnasium_env, env_id, kwargs, max_episode_steps, module)
            return python_env_spec(make, env_id, reward_threshold)
        if module and callable(getattr(imported, env_id, None)):
            raise ConfigError(f"env.name={name!r}: {module} has {env_id}, but gymnasium has no id {env_id!r} (a "
                              f"`module:id` name imports the module, then makes its registered id). Name the class by "
                              f"_target_ in an env config (conf/env/<name>.yaml holding `_target_: {module}.{env_id}` "
                              f"and its arguments, then --config-dir conf env=<name>), or register it in {module}: "
                              f"gymnasium.register(id=\"{env_id}-v0\", entry_point=\"{module}:{env_id}\")")
    known = gymnax_ids() | envpool_ids() | gymnasium_ids()
    close = difflib.get_close_matches(env_id, sorted(known), n=5, cutoff=0.6)
    hint = f" Close matches: {', '.join(close)}" if close else " See gymnax.registered_envs and gymnasium.registry"
    where = {"auto": "gymnax, envpool or gymnasium"}.get(backend, backend)
    raise ConfigError(f"env.name={name!r} is not a known environment of {where}.{hint}")


def _make_envpool_probe(env_id: str, kwargs: dict, max_episode_steps: int | None):
    """One envpool env (a batch of one), to read the spaces from."""
    import envpool

    extra = {"max_episode_steps": int(max_episode_steps)} if max_episode_steps else {}
    return envpool.make_gymnasium(env_id, num_envs=1, **kwargs, **extra)


def is_gymnasium_env(obj) -> bool:
    import gymnasium

    return isinstance(obj, gymnasium.Env)


# the keys of the env groups that name an env by id (gym_env, gymnasium, gymnax)
GROUP_KEYS = frozenset({"name", "kwargs", "max_episode_steps", "reward_threshold", "backend"})


def build_env(env_cfg: Any) -> EnvSpec:
    """Calls the config's `_target_` factory with its other keys. It may return an EnvSpec, (env, params), a
    gymnax-style env, or a `gymnasium.Env` (a Python env: the factory is called again for every copy)."""
    kwargs = {k: v for k, v in dict(env_cfg).items() if k != "_target_"}
    target = env_cfg.get("_target_")
    if not target:
        raise ConfigError("env._target_ is missing: an env config names its factory, e.g. maze_jax.envs.make_env")
    factory = import_object(target, "env._target_")
    try:
        env = factory(**kwargs)
    except ConfigError:
        raise
    except TypeError as error:  # arguments that do not fit the factory
        stray = sorted(set(kwargs) & GROUP_KEYS)
        hint = (f" (env._target_ given on the command line keeps the env group's other keys: {', '.join(stray)}; "
                "give your env a config file, conf/env/<name>.yaml with `--config-dir conf`, holding _target_ and "
                "its arguments)") if stray and "unexpected keyword" in str(error) else ""
        raise ConfigError(f"env config does not fit {target}: {first_line(error)}{hint}") from None
    except Exception as error:  # the env's own constructor refused its arguments (a wrong type, a bad value)
        given = ", ".join(f"{k}={v!r}" for k, v in kwargs.items() if k not in GROUP_KEYS or k == "name")
        raise ConfigError(f"env._target_={target} could not be built ({given}): {type(error).__name__}: "
                          f"{first_line(error)}") from None
    if is_gymnasium_env(env):
        env.close()
        return python_env_spec(functools.partial(factory, **kwargs), kwargs.get("name") or target.rsplit(".", 1)[-1],
                               kwargs.get("reward_threshold", "auto"))
    if not isinstance(env, (EnvSpec, str)) and not is_jax_env(env[0] if isinstance(env, tuple) and env else env):
        raise ConfigError(f"env._target_={target!r} returned {type(env).__name__}, not an env: a factory returns an "
                          "EnvSpec, an (env, params) pair, a gymnax-style env or a gymnasium.Env")
    return as_env_spec(env, kwargs.get("name"), kwargs.get("reward_threshold"))


def is_jax_env(obj) -> bool:
    """A gymnax-style env: reset(key, params), step(key, state, action, params), action_space(params)."""
    return all(callable(getattr(obj, name, None)) for name in ("reset", "step", "action_space"))


def as_env_spec(env: Any, name: str | None = None, reward_threshold: float | None = None) -> EnvSpec:
    """An EnvSpec from an EnvSpec, an id ("CartPole-v1", "LunarLander-v3": resolved as `make_env` does), a
    gymnax-style env (its default params are used), an (env, params) pair, or a `gymnasium.Env` (copied for
    every env the collector steps)."""
    import copy

    if isinstance(env, EnvSpec):
        return env
    if isinstance(env, str):
        return make_env(env)
    if is_gymnasium_env(env):  # named by its registered id where gymnasium.make made it, else by its class
        registered = getattr(getattr(env, "spec", None), "id", None)
        return python_env_spec(functools.partial(copy.deepcopy, env), name or registered or
                               type(env.unwrapped).__name__, "auto" if reward_threshold is None else reward_threshold)
    env, params = env if isinstance(env, tuple) else (env, env.default_params)
    check_step(env, params, name or type(env).__name__)
    # "auto": an env of one's own has no known threshold; numbers are checked (a config gives strings too)
    return EnvSpec(env, params, name or type(env).__name__, read_threshold(reward_threshold, None))


def check_step(env, params, name: str) -> None:
    """One line, before anything compiles, when a JAX env of one's own steps in a way the collectors cannot scan
    over: one number per step as reward and as done, and observations of the shapes and dtypes `reset` gave
    (else XLA's loop reports a carry mismatch, naming no env). Envs whose step cannot be traced here are left to
    the run, which reports that failure where it happens."""
    import jax

    def one_step(key):
        obs, state = env.reset(key, params)
        return obs, env.step(key, state, env.action_space(params).sample(key), params)

    try:
        first, stepped = jax.eval_shape(one_step, jax.random.key(0))
    except Exception:
        return
    obs, reward, flags = stepped[0], stepped[2], stepped[3:-1]  # flags: done, or terminated and truncated
    names = ("done",) if len(flags) == 1 else ("terminated", "truncated")
    for what, value in (("reward", reward), *zip(names, flags)):
        if getattr(value, "shape", None) != ():
            raise ConfigError(f"env {name}: step returns a {what} of shape {getattr(value, 'shape', type(value))}, "
                              f"where one number per step (shape ()) is expected: return e.g. {what}.squeeze()")
    shapes = lambda tree: jax.tree.map(lambda x: f"{x.dtype}{list(x.shape)}", tree)  # noqa: E731
    if shapes(first) != shapes(obs):
        raise ConfigError(f"env {name}: step returns observations {shapes(obs)}, reset {shapes(first)}: both must "
                          "give the same shapes and dtypes")
