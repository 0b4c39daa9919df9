"""Python envs on a Ray cluster (`runner=ray`): env workers are Ray actors, the learner stays in this process.

Worker w holds `envs_per_worker` envs and acts on them itself, with the parameters the learner puts in Ray's
object store once per update, so only parameters go out and whole rollouts come back (no round trip per step).
Every learner collects through the host collector's protocol (`collect(acting, act_keys, env_key)`), so the actor
thread and its policy lag apply unchanged: `RayRollouts` for rollouts, `RayEpisodes` for a learner of fresh episodes
(ES), where every worker plays a slice of the envs' episodes (of the population), antithetic pairs together.

A worker that dies (its process killed, its node lost) is restarted by Ray and its share is collected again; more
than `max_worker_restarts` failures stop the run with one line, as a failing env does. Ray is started here when
no address is given (and stopped at the end); with an address this process joins that cluster and leaves it
running. Workers' own output goes to Ray's logs (failures come back as one line each). Workers act on CPU
(`JAX_PLATFORMS=cpu`, one XLA thread), so they never take an accelerator's memory.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import Trajectory
from maze_jax.collectors import EnvFailed, Trainer
from maze_jax.config import ConfigError, first_line
from maze_jax.envs import EnvSpec
from maze_jax.shell.collectors import reaper
from maze_jax.shell.collectors.host import EpisodeCollector, RolloutCollector, rollout_host_trainer
from maze_jax.shell.network import unreachable
from maze_jax.shell.settings import HostSettings, RaySettings
from maze_jax.xla_flags import with_defaults

WORKER_XLA_FLAGS = ("--xla_cpu_multi_thread_eigen=false",)


def worker_env() -> dict:
    """The environment variables of a worker: JAX on the CPU, with this process's XLA_FLAGS (a flag the user set
    holds on the workers too: the same compile options give the same float rounding, e.g. LLVM's level) and the
    worker defaults it does not set."""
    return {"JAX_PLATFORMS": "cpu", "XLA_FLAGS": with_defaults(os.environ.get("XLA_FLAGS", ""), WORKER_XLA_FLAGS)}


class Interrupted(Exception):
    """A collection cut short because the run is closing."""


class EnvWorker:
    """What one Ray actor runs: `n_envs` copies of the env, seeded `seed`, `seed + 1`, ..., and the policy acting
    on them. `rollout` collects as the host collector does (one seed's parameters); `episodes` plays some of the
    episodes of a learner of fresh episodes (all seeds' parameters)."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_envs: int, seed: int, vectorization: str,
                 n_steps: int, n_seeds: int = 1):
        self.args = (algorithm, env_spec, n_envs, seed, vectorization)
        self.n_steps, self.n_seeds, self.collector = n_steps, n_seeds, None

    def ready(self) -> int:
        return os.getpid()

    def rollout(self, params, key_data):
        """One rollout with `params` and agent keys `key_data` (leading seed axis of 1): (Trajectory in numpy,
        (1, T, n_envs, ...)), the episodes that ended [(env, return, length)], the envs' EventStats or None)."""
        if self.collector is None:
            algorithm, env_spec, n_envs, seed, vectorization = self.args
            self.collector = RolloutCollector(algorithm, env_spec, n_envs, self.n_steps, 1, seed, vectorization)
        trajectory, ended, events, steps = self.collector.collect(params, jax.random.wrap_key_data(key_data), None)
        return jax.device_get(trajectory), ended, events, steps

    def episodes(self, acting, act_key_data, env_key_data, columns: list):
        """A learner of fresh episodes: `columns` (indices into the seed-flattened envs of `acting`) play one episode
        each, as EpisodeCollector does (with every seed's agent key, and this worker's env key): (those columns'
        Trajectory in numpy, (T, len(columns), ...) except
        `last_obs`, the episodes that ended, the EventStats, the steps taken)."""
        if self.collector is None:
            algorithm, env_spec, n_envs, seed, vectorization = self.args
            self.collector = EpisodeCollector(algorithm, env_spec, n_envs, self.n_seeds, seed, vectorization)
        trajectory, ended, events, steps = self.collector.collect(acting, jax.random.wrap_key_data(act_key_data),
                                                                  jax.random.wrap_key_data(env_key_data),
                                                                  columns=columns)
        seeds, envs = np.divmod(np.asarray(columns), self.collector.n_envs)

        def pick(field: str, x):  # (S, T, N, ...) -> (T, C, ...); (S, N, ...) -> (C, ...)
            x = np.asarray(x)
            return x[seeds, envs] if field == "last_obs" else np.swapaxes(x[seeds, :, envs], 0, 1)

        picked = Trajectory(*(jax.tree.map(functools.partial(pick, f), getattr(trajectory, f))
                              for f in Trajectory._fields))
        return picked, ended, events, steps


def worker_error(error: BaseException) -> str:
    """The line of a Ray error that says what went wrong in the worker (its cause's, where it has one)."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {first_line(cause)}"
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return next((line for line in reversed(lines) if "Error" in line.split(":")[0]), first_line(error))


def has_auth_token() -> bool:
    """Whether Ray's authentication token is at hand (`RAY_AUTH_TOKEN`, `RAY_AUTH_TOKEN_PATH` or
    `~/.ray/auth_token`)."""
    path = os.environ.get("RAY_AUTH_TOKEN_PATH") or os.path.expanduser(os.path.join("~", ".ray", "auth_token"))
    return bool(os.environ.get("RAY_AUTH_TOKEN")) or os.path.isfile(path)


def start_ray(settings: RaySettings) -> bool:
    """Connects to Ray: joins `settings.address`, or starts a local Ray with a CPU for every worker. True when
    this call started or joined it (so the run ends the connection); False when the caller had already."""
    import ray

    if ray.is_initialized():
        return False
    main = threading.current_thread() is threading.main_thread()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
    need = int(np.ceil(settings.num_workers * settings.cpus_per_worker))
    deadline = time.monotonic() + settings.start_timeout_s
    try:
        while True:
            try:
                with warnings.catch_warnings():  # Ray forks its services before any JAX thread could matter to them
                    warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
                    ray.init(address=settings.address, include_dashboard=False, logging_level=logging.ERROR,
                             log_to_driver=False,
                             num_cpus=None if settings.address else max(os.cpu_count() or 1, need))
                break
            except ConnectionAbortedError:  # Ray Client's server could not start this client's session in time (a
                if time.monotonic() > deadline:  # busy head): it starts afresh on the next try
                    raise
                time.sleep(1.0)
    except Exception as error:
        where = f"join the Ray cluster at runner.address={settings.address}" if settings.address else \
            "start a local Ray"
        raise EnvFailed(f"runner=ray could not {where}: {type(error).__name__}: {first_line(error)}") from None
    finally:
        for s, handler in handlers.items():  # Ray's own SIGTERM handler would exit without a checkpoint
            signal.signal(s, handler)
    return True


def start_reaper(ignore: set) -> subprocess.Popen:
    """The reaper (`reaper.py`) of the processes this one starts from now on (but `ignore`): a local Ray's services
    end with the run even when the run is killed outright."""
    return subprocess.Popen([sys.executable, reaper.__file__, str(os.getpid()), *map(str, ignore)],
                            stdin=subprocess.PIPE, start_new_session=True)


class RayWorkers:
    """The run's Ray actors, each built from `args_of(w)` (EnvWorker's arguments): started and waited for,
    called all together (`call`), restarted by Ray when they die, and ended by `close`."""

    def __init__(self, settings: RaySettings, args_of: Callable[[int], tuple]):
        import ray

        self.settings, self.failures, self.interrupted = settings, 0, threading.Event()
        self.env_steps = 0  # taken by the workers whose results arrived (a long epoch's progress)
        self.restarting: dict[int, float] = {}  # worker -> when its death was seen
        start = time.perf_counter()
        before = set(reaper.descendants(os.getpid()))
        self.own_ray = start_ray(settings)
        self.reaper = start_reaper(before) if self.own_ray and not settings.address else None
        actor = ray.remote(EnvWorker).options(
            max_restarts=settings.max_worker_restarts, num_cpus=settings.cpus_per_worker,
            runtime_env={"env_vars": worker_env()})
        self.actors = [actor.remote(*args_of(w)) for w in range(settings.num_workers)]
        ready, _ = ray.wait([a.ready.remote() for a in self.actors], num_returns=len(self.actors),
                            timeout=settings.start_timeout_s)
        if len(ready) < len(self.actors):
            self.close()
            raise EnvFailed(f"runner=ray: {len(self.actors) - len(ready)} of {len(self.actors)} workers did not "
                            f"start within {settings.start_timeout_s:g} s (runner.start_timeout_s): the cluster "
                            f"lacks CPUs for runner.num_workers={settings.num_workers} x "
                            f"runner.cpus_per_worker={settings.cpus_per_worker:g}")
        try:
            ray.get(ready)
        except ray.exceptions.RayError as error:  # a worker could not be built (its code does not import there)
            self.close()
            raise EnvFailed(f"runner=ray: a worker could not start: {type(error).__name__}: "
                            f"{worker_error(error)}") from None
        where = "the Ray this process runs in" if not self.own_ray else \
            f"the Ray cluster at {settings.address}" if settings.address else "a local Ray"
        n = len(self.actors)
        print(f"Ray: {n} env worker{'s' if n > 1 else ''} on {where}, ready in {time.perf_counter() - start:.1f} s",
              flush=True)

    def call(self, method: str, args_of: Callable[[int], tuple], should_stop: Callable = lambda: False) -> list:
        """`method(*args_of(w))` on every worker w; the results in worker order, each ending with the env steps it
        took (added to `env_steps` as it arrives). A worker whose process or node died is called again once Ray
        restarted it (a line says so). Raises EnvFailed for an env's failure or once more than
        `max_worker_restarts` workers failed, Interrupted when `should_stop()` or `interrupt()`."""
        import ray

        pending = {getattr(self.actors[w], method).remote(*args_of(w)): w for w in range(len(self.actors))}
        results = {}
        while pending:
            if should_stop() or self.interrupted.is_set():
                raise Interrupted()
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.1)
            for ref in done:
                w = pending.pop(ref)
                try:
                    results[w] = ray.get(ref)
                except ray.exceptions.RayTaskError as error:  # the env (or the policy) raised in the worker
                    cause = error.cause
                    raise EnvFailed(f"Ray worker {w}: {cause if isinstance(cause, EnvFailed) else first_line(error)}",
                                    getattr(cause, "reason", "env-failed")) from None
                except ray.exceptions.RayError as error:  # its process or node is gone
                    self._failed(w, error)
                    pending[getattr(self.actors[w], method).remote(*args_of(w))] = w
                else:
                    self.restarting.pop(w, None)
                    self.env_steps += int(results[w][-1])
        return [results[w] for w in range(len(self.actors))]

    def _failed(self, w: int, error: BaseException) -> None:
        """Counts worker `w`'s failure (once per death: calls that find it still restarting wait for it), or
        raises EnvFailed past `max_worker_restarts` or when it stays away longer than `start_timeout_s`."""
        import ray

        if w in self.restarting and not isinstance(error, ray.exceptions.ActorDiedError):
            if time.perf_counter() - self.restarting[w] > self.settings.start_timeout_s:
                raise EnvFailed(f"runner=ray: worker {w} did not come back within runner.start_timeout_s="
                                f"{self.settings.start_timeout_s:g} s after it died") from None
            time.sleep(0.2)
            return
        self.failures += 1
        self.restarting[w] = time.perf_counter()
        limit = self.settings.max_worker_restarts
        if self.failures > limit:
            raise EnvFailed(f"runner=ray: {self.failures} worker failures, more than runner.max_worker_restarts="
                            f"{limit} (the last: worker {w}, {type(error).__name__}: {worker_error(error)})") from None
        print(f"Ray worker {w} died ({type(error).__name__}); Ray restarts it and its share is collected again "
              f"({self.failures} of runner.max_worker_restarts={limit} failures)", file=sys.stderr, flush=True)

    def interrupt(self) -> None:
        self.interrupted.set()

    def close(self) -> None:
        """Ends the workers (and their envs' processes), and the Ray this run started or joined."""
        import ray

        self.interrupt()
        for actor in self.actors if ray.is_initialized() else []:
            ray.kill(actor, no_restart=True)
        if self.own_ray:
            ray.shutdown()
            self.own_ray = False
        if self.reaper is not None:  # it ends what the shutdown left, then itself
            self.reaper.stdin.close()
            self.reaper.wait(10)
            self.reaper = None


def _concatenate(parts: list, axis: int):
    return jax.tree.map(lambda *xs: np.concatenate(xs, axis), *parts)


def _events(parts: list):
    """The workers' EventStats side by side (env axis; every name any of them reported), or None when no env
    reported any."""
    parts = [p for p in parts if p is not None]
    if not parts:
        return None
    events = {k: None for p in parts for k in p.step_sum}
    kpis = {k: None for p in parts for k in p.kpi_sum}
    return _concatenate([p.with_names(events, kpis) for p in parts], 0)


class RayRollouts:
    """The host collector's protocol over Ray workers: `n_seeds * n_envs` envs, worker w holding
    `envs_per_worker` of seed w // (num_workers / n_seeds), acting with its seed's agent key folded with its index
    among that seed's workers; `collect(params, act_keys, env_key)` as RolloutCollector's."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_steps: int, n_seeds: int, seed: int,
                 vectorization: str, settings: RaySettings):
        self.n_seeds, self.m = n_seeds, settings.envs_per_worker
        self.per_seed = settings.num_workers // n_seeds
        self.workers = RayWorkers(settings, lambda w: (algorithm, env_spec, self.m, seed + w * self.m,
                                                       vectorization, n_steps))

    def collect(self, params, act_keys, env_key=None, should_stop: Callable = lambda: False):
        import ray

        host = jax.device_get(params)
        refs = [ray.put(jax.tree.map(lambda x: x[s:s + 1], host)) for s in range(self.n_seeds)]
        keys = np.asarray(jax.random.key_data(jnp.stack([
            jax.random.fold_in(act_keys[w // self.per_seed], w % self.per_seed)[None]
            for w in range(len(self.workers.actors))])))
        try:
            results = self.workers.call("rollout", lambda w: (refs[w // self.per_seed], keys[w]), should_stop)
        except Interrupted:
            return None
        def join(parts: list, axis: int):  # worker parts (1, T, m, ...) -> (S, T, N, ...): a seed's workers in a row
            k = self.per_seed
            return _concatenate([_concatenate(parts[s * k:(s + 1) * k], axis) for s in range(self.n_seeds)], 0)

        joined = Trajectory(*(join([getattr(r[0], f) for r in results], 1 if f == "last_obs" else 2)
                              for f in Trajectory._fields))
        ended = [(w * self.m + env, ret, length) for w, r in enumerate(results) for env, ret, length in r[1]]
        return jax.tree.map(jax.numpy.asarray, joined), ended, _events([r[2] for r in results]), \
            sum(r[3] for r in results)

    def interrupt(self) -> None:
        self.workers.interrupt()

    def close(self) -> None:
        self.workers.close()


def member_slices(n_seeds: int, population: int, n_workers: int) -> list[list[int]]:
    """The columns (indices into the seed-flattened envs, one per population member) each worker plays: contiguous
    slices of the antithetic pairs of every seed, as even as can be, each pair (i, i + population / 2) in one
    slice."""
    pairs = [s * population + i for s in range(n_seeds) for i in range(population // 2)]
    return [[int(m) for m in chunk] + [int(m) + population // 2 for m in chunk]
            for chunk in np.array_split(np.array(pairs, int), n_workers)]


class RayEpisodes:
    """EpisodeCollector's protocol over Ray workers: the envs' episodes (antithetic pairs together) split into one
    slice per worker; each worker gets the acting parameters (from the object store) and its columns, and the
    learner gets one Trajectory (S, T, N, ...) padded to the longest worker's T."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_seeds: int, seed: int, vectorization: str,
                 settings: RaySettings):
        self.n_seeds, self.n_envs, m = n_seeds, algorithm.config.n_envs, settings.envs_per_worker
        self.workers = RayWorkers(settings, lambda w: (algorithm, env_spec, m, seed + w * m, vectorization, 0,
                                                       n_seeds))

    def collect(self, acting, act_keys, env_key, should_stop: Callable = lambda: False):
        import ray

        slices = member_slices(self.n_seeds, self.n_envs, len(self.workers.actors))
        ref = ray.put(jax.device_get(acting))
        act_data = np.asarray(jax.random.key_data(act_keys))
        env_data = np.asarray(jax.random.key_data(jax.random.split(env_key, len(self.workers.actors))))
        try:
            results = self.workers.call("episodes", lambda w: (ref, act_data, env_data[w], slices[w]), should_stop)
        except Interrupted:
            return None
        horizon = max(r[0].reward.shape[0] for r in results)
        n = self.n_seeds * self.n_envs

        def merge(field: str):
            timed = field != "last_obs"

            def one(*parts):
                first = parts[0]
                out = np.zeros(((horizon,) if timed else ()) + (n,) + first.shape[2 if timed else 1:], first.dtype)
                for columns, part in zip(slices, parts):
                    if timed:
                        out[:part.shape[0], columns] = part
                    else:
                        out[columns] = part
                shape = (self.n_seeds, self.n_envs)  # -> (S, T, N, ...) or (S, N, ...)
                if timed:
                    return np.swapaxes(out.reshape((horizon,) + shape + out.shape[2:]), 0, 1)
                return out.reshape(shape + out.shape[1:])

            return jax.tree.map(one, *[getattr(r[0], field) for r in results])

        joined = Trajectory(*(merge(f) for f in Trajectory._fields))
        ended = [e for r in results for e in r[1]]
        return jax.tree.map(jax.numpy.asarray, joined), ended, _events([r[2] for r in results]), \
            sum(r[3] for r in results)

    def interrupt(self) -> None:
        self.workers.interrupt()

    def close(self) -> None:
        self.workers.close()


def ray_trainer(algorithm: Algorithm, env_spec: EnvSpec, n_seeds: int, settings: HostSettings) -> Trainer:
    """The host trainer of `algorithm` with its envs on Ray workers (`settings.ray`)."""
    ray_settings: RaySettings = settings.ray
    if not env_spec.is_python:
        raise ConfigError(f"runner=ray steps Python envs on Ray workers; {env_spec.env.name} is a JAX env, which "
                          f"trains in one compiled program: use runner=local (or env=gymnasium to step gymnasium's "
                          f"version on Ray)")
    address = ray_settings.address
    if address and address not in ("auto", "local") and (why := unreachable(address, ray_settings.start_timeout_s)):
        raise ConfigError(f"runner.address={address}: no Ray cluster answers there ({why}); start one (ray start "
                          f"--head) or leave runner.address empty for a local Ray")
    if address and "RAY_AUTH_MODE" not in os.environ and has_auth_token():
        # a head started on a machine with a token enables token authentication, which Ray's drivers and clients
        # use only when told (read when Ray is imported): with a token at hand, use it
        os.environ["RAY_AUTH_MODE"] = "token"
    if algorithm.fresh_episodes:
        return rollout_host_trainer(algorithm, env_spec, n_seeds, settings, lambda seed: RayEpisodes(
            algorithm, env_spec, n_seeds, seed, settings.vectorization, ray_settings))
    return rollout_host_trainer(algorithm, env_spec, n_seeds, settings, lambda seed: RayRollouts(
        algorithm, env_spec, algorithm.config.n_rollout_steps, n_seeds, seed, settings.vectorization, ray_settings))
