"""Copies of a Python env stepped together, as the host collector needs them: observations converted to
maze_jax's arrays, same-step auto-reset (an ended episode's final observation is kept and the env starts its next
episode at once, as gymnax envs do), and every failure turned into one `EnvFailed` that names the env, the step
and the exception.

gymnasium's own vector envs do the stepping (`sync`: in this process; `async`: one worker process per env), or an
envpool batch for envpool ids (its next-step auto-reset is turned into same-step by resetting ended envs at once).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
import os
import signal
import sys
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from maze_jax.collectors import EnvFailed
from maze_jax.config import ConfigError, first_line

MODES = ("sync", "async")
WORKER_DIED = (EOFError, BrokenPipeError, ConnectionError)
# A Python env without a time limit gets this one (gymnasium's TimeLimit), in training, ES and evaluation: an
# evaluation or an ES member's episode that never ends would otherwise never return.
DEFAULT_TIME_LIMIT = 100_000


class Vectorization(NamedTuple):
    """How a vector env steps (`runner.vectorization`: sync in this process, async in a worker process per env),
    and how long one call of the envs' `step` or `reset` may take (`runner.env_step_timeout_s`; None: forever)."""

    mode: str = "sync"
    timeout_s: float | None = 300.0


class EnvTimeout(Exception):
    """An env call ran past its deadline (raised in the calling thread by `deadline`)."""


def _raise_timeout(signum, frame):
    raise EnvTimeout()


@contextlib.contextmanager
def deadline(seconds: float | None):
    """Raises EnvTimeout inside the block once it has run `seconds` (SIGALRM: in the main thread only, since only
    there can Python deliver a signal; elsewhere, and for None, a plain block)."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _raise_timeout)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def has_no_time_limit(env) -> bool:
    """Whether `env` (a PythonEnv) ends no episode after a number of steps."""
    return not env.max_episode_steps


def envpool_kwargs(env, max_episode_steps: int | None = None) -> dict:
    """envpool's constructor settings for `env` (a PythonEnv with an envpool id): its own, and the episode cap
    (`max_episode_steps`; an env without a time limit of its own gets DEFAULT_TIME_LIMIT)."""
    cap = max_episode_steps or (DEFAULT_TIME_LIMIT if has_no_time_limit(env) else None)
    return {**env.envpool_kwargs, **({"max_episode_steps": int(cap)} if cap else {})}


def time_limit_note(name: str) -> str:
    """The line said when the time limit a Python env without one of its own gets (DEFAULT_TIME_LIMIT) cuts one
    of its episodes: an env that ends or truncates its episodes itself never sees it."""
    return (f"Note: env {name} declares no time limit (gymnasium's max_episode_steps) and an episode reached "
            f"{DEFAULT_TIME_LIMIT:,} steps: it was cut there (env.max_episode_steps=N sets a limit)")


_NOTED: set[str] = set()  # envs whose cut episode was noted: once per process


def worker_env(make, max_episode_steps: int | None = None):
    """One env as a vector env's worker builds it: Ctrl-C is left to the training process (which stops cleanly and
    closes the workers), and an optional time limit."""
    if max_episode_steps:
        import gymnasium

        return gymnasium.wrappers.TimeLimit(_ignoring_sigint(make), max_episode_steps)
    return _ignoring_sigint(make)


def _ignoring_sigint(make):
    if multiprocessing.parent_process() is None:
        return make()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # in a worker process only
    try:
        return make()
    except Exception as error:  # one line instead of the worker's traceback; the training process then stops
        print(f"env worker could not build its env: {type(error).__name__}: {first_line(error)}", file=sys.stderr,
              flush=True)
        os._exit(1)


class _TrainingProcessPipe:
    """An async worker's end of its pipe to the training process. Once that process is gone (killed outright), the
    worker ends at once and silently: gymnasium's worker would print a traceback (a BrokenPipeError) for every env."""

    def __init__(self, pipe):
        self._pipe = pipe

    def __getattr__(self, name):
        return getattr(self._pipe, name)

    def recv(self):
        try:
            return self._pipe.recv()
        except WORKER_DIED:
            os._exit(0)

    def send(self, obj) -> None:
        try:
            self._pipe.send(obj)
        except WORKER_DIED:
            os._exit(0)


def quiet_worker(index: int, env_fn, pipe, *rest) -> None:
    """gymnasium's async worker (in the worker process), on a pipe that ends the worker quietly when the training
    process is gone."""
    from gymnasium.vector.async_vector_env import _async_worker

    _async_worker(index, env_fn, _TrainingProcessPipe(pipe), *rest)


def _rows(tree, index):
    if isinstance(tree, dict):
        return {k: _rows(v, index) for k, v in tree.items()}
    return tuple(_rows(v, index) for v in tree) if isinstance(tree, tuple) else tree[index]


def _set_rows(tree, index, value):
    if isinstance(tree, dict):
        for k in tree:
            _set_rows(tree[k], index, value[k])
    else:
        tree[index] = value


def _copy(tree):
    return np.array(tree, copy=True) if not isinstance(tree, dict) else {k: _copy(v) for k, v in tree.items()}


def _finite(tree) -> bool:
    leaves = tree.values() if isinstance(tree, dict) else [tree]
    return all(_finite(x) if isinstance(x, dict) else
               (not np.issubdtype(np.asarray(x).dtype, np.floating) or np.isfinite(x).all()) for x in leaves)


def reported(info: dict, n: int) -> tuple[dict, dict]:
    """The events and KPIs the envs reported in a vector step's `info` (`info["events"]`, `info["kpis"]`, as JAX envs
    report them): {name: (n,) float32}, 0 for an env that did not report a name this step."""
    def values(source: dict, group: str) -> dict:
        found = source.get(group) or {}
        return {name: np.where(found.get("_" + name, True), np.asarray(v, np.float32), 0.0).astype(np.float32)
                for name, v in found.items() if not name.startswith("_") and np.shape(v) == (n,)}

    final, ended = info.get("final_info") or {}, np.asarray(info.get("_final_info", np.zeros(n, bool)))

    def merged(group: str) -> dict:  # an ended env's step info is its new episode's: its last step's is final_info's
        now, last = values(info, group), values(final, group)
        return {k: np.where(ended, last.get(k, 0.0), now.get(k, 0.0)).astype(np.float32)
                for k in sorted({*now, *last})}

    return merged("events"), merged("kpis")


def _shape_hint(what: str, error: Exception) -> str:
    """Where numpy could not store a step's result as one number (gymnasium's vector env keeps each env's reward and
    flags in arrays of one number per env): the likely cause, which the error does not name."""
    if what == "step" and isinstance(error, ValueError) and "array element with a sequence" in str(error):
        return " (did step return a reward or a terminated/truncated flag of more than one number? Each is one)"
    return ""


class VectorEnv:
    """`n` copies of `env` (a PythonEnv), seeded `seed`, `seed + 1`, ...; `max_episode_steps` caps episodes (an env
    without a time limit of its own gets DEFAULT_TIME_LIMIT).

    A `step` or `reset` that does not return within `vectorization.timeout_s` ends in EnvFailed: raised in the
    calling thread (async workers: the wait for their answers times out, and closing kills them; in the main
    thread: a SIGALRM), or, for a sync call in another thread (an actor thread), reported by `overdue()` to the
    thread that waits for it."""

    def __init__(self, env: Any, n: int, seed: int, vectorization: Vectorization | str = "sync",
                 max_episode_steps: int | None = None):
        vectorization = Vectorization(vectorization) if isinstance(vectorization, str) else vectorization
        mode = vectorization.mode
        if mode not in MODES:
            raise ConfigError(f"runner.vectorization={mode!r} is unknown. Valid: {', '.join(MODES)}")
        self._default_cap = DEFAULT_TIME_LIMIT if not max_episode_steps and has_no_time_limit(env) else None
        max_episode_steps = max_episode_steps or self._default_cap
        self.env, self.n, self.name, self.steps = env, n, env.name, 0
        self.env_steps = 0  # env steps taken (a vector step of k active envs counts k): progress on a long epoch
        self._lengths = np.zeros(n, np.int64)  # each env's steps in its episode: a cut by the default cap is noted
        self.mode, self.timeout_s = mode, vectorization.timeout_s
        self.reports: tuple[dict, dict] = ({}, {})  # the last step's events and KPIs (`reported`)
        self._pool = self._vector = None
        self._in_call: tuple[str, float] | None = None  # (what, when it started) while a sync call runs
        self._hung = False  # a call never returned: its envs are left alone when closing
        self._call("start", self._start, mode, max_episode_steps)
        self.reset(seed)

    def _start(self, mode: str, max_episode_steps: int | None):
        if self.env.envpool_id is not None:
            self._envpool_kwargs = envpool_kwargs(self.env, max_episode_steps)
            return
        import gymnasium

        fns = [functools.partial(worker_env, self.env.make_one, max_episode_steps)] * self.n
        same_step = gymnasium.vector.AutoresetMode.SAME_STEP
        if mode == "sync":
            self._vector = gymnasium.vector.SyncVectorEnv(fns, autoreset_mode=same_step)
        else:  # spawned: forking a process that runs JAX's threads can deadlock
            # a worker's exception comes back as one EnvFailed line: not also as gymnasium's logged traceback
            gymnasium.logger.min_level = gymnasium.logger.ERROR + 10
            self._vector = gymnasium.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=same_step,
                                                           worker=quiet_worker)

    def reset(self, seed: int) -> None:
        """Every env starts a new episode; env i seeded `seed + i`."""
        self._call("reset", self._reset, int(seed))
        self._lengths[:] = 0

    def reset_some(self, which: np.ndarray, seeds) -> bool:
        """The envs in `which` (bool, one per env) start new episodes, env i seeded `seeds[i]`; the others go on.
        False, and nothing reset, for envpool, which seeds its envs once, when it builds them."""
        if self.env.envpool_id is not None:
            return False
        self._call("reset", self._reset_some, np.asarray(which, bool), seeds)
        self._lengths[np.asarray(which, bool)] = 0
        return True

    def _reset_some(self, which: np.ndarray, seeds) -> None:
        obs, _ = self._vector_call("reset", seed=[int(s) if w else None for s, w in zip(seeds, which)],
                                   options={"reset_mask": which})
        self._obs = self.env.to_observation(obs)

    def _reset(self, seed: int) -> None:
        if self.env.envpool_id is not None:  # envpool seeds a batch when it builds it
            import envpool

            if self._pool is not None:
                self._pool.close()
            self._pool = envpool.make_gymnasium(self.env.envpool_id, num_envs=self.n, seed=seed,
                                                **self._envpool_kwargs)
            obs, info = self._pool.reset()
            self._obs = self.env.to_observation(self._ordered(obs, info))
            return
        obs, _ = self._vector_call("reset", seed=seed)
        self._obs = self.env.to_observation(obs)

    def _vector_call(self, name: str, **kwargs):
        """gymnasium's vector `reset` or `step`; async workers' answers are waited for up to the deadline."""
        if self.mode != "async":
            return getattr(self._vector, name)(**kwargs)
        getattr(self._vector, f"{name}_async")(**kwargs)
        return getattr(self._vector, f"{name}_wait")(timeout=self.timeout_s)

    @staticmethod
    def _ordered(x, info):
        """envpool's outputs in env-id order."""
        if (np.diff(info["env_id"]) > 0).all():
            return x
        order = np.argsort(info["env_id"])
        return _rows(x, order) if isinstance(x, dict) else np.asarray(x)[order]

    def _timed_out(self, what: str) -> str:
        return (f"env {self.name} did not return from {what} within {self.timeout_s:g} s (vector step {self.steps}; "
                "runner.env_step_timeout_s sets the limit, null for none)")

    def overdue(self) -> str:
        """'' unless a sync call of the envs has run past the deadline: then the line that says so (the envs are
        then left alone when closing)."""
        started = self._in_call
        if started is None or self.timeout_s is None or self.mode != "sync" or \
                time.monotonic() - started[1] < self.timeout_s:
            return ""
        self._hung = True
        return self._timed_out(started[0])

    def _call(self, what: str, fn, *args):
        timed = what != "start" and self.timeout_s is not None
        try:
            if not timed or self.mode == "async":  # async: the waits for the workers' answers have the deadline
                return fn(*args)
            self._in_call = (what, time.monotonic())
            with deadline(self.timeout_s):
                return fn(*args)
        except (EnvFailed, ConfigError):
            raise
        except (EnvTimeout, multiprocessing.TimeoutError):
            raise EnvFailed(self._timed_out(what)) from None
        except WORKER_DIED as error:
            raise EnvFailed(f"a worker process of env {self.name} died during {what} (vector step {self.steps}; "
                            f"{type(error).__name__} from its pipe)") from None
        except Exception as error:  # the env's own code raised
            raise EnvFailed(f"env {self.name} raised {type(error).__name__} in {what} (vector step {self.steps}): "
                            f"{first_line(error)}{_shape_hint(what, error)}") from None
        finally:
            self._in_call = None

    @property
    def obs(self):
        """The current observations (maze_jax arrays, leading axis: env)."""
        return self._obs

    def step(self, actions, active: np.ndarray | None = None):
        """Steps every env with `actions` (maze_jax actions, numpy). Returns (next observations, rewards, terminated,
        truncated, final observations): where an episode ended, the next observation is the new episode's first and
        the final observation the ended one's last; elsewhere both are the next observation.

        With `active` (bool, one per env), envpool and sync envs step only those: the others keep their observation,
        with reward 0, not ended and no events (async envs all step, their workers side by side). An evaluation's
        envs whose episode ended, and ES's idle slots, wait this way at no cost."""
        env_actions = self.env.to_env_action(actions)
        some = None if active is None or self.mode == "async" or np.all(active) else np.flatnonzero(active)
        obs, reward, terminated, truncated, final = self._call("step", self._step, env_actions, some)
        self.steps += 1
        self.env_steps += self.n if active is None else int(np.count_nonzero(active))
        if not (np.isfinite(reward).all() and _finite(obs) and _finite(final)):
            what = "rewards" if not np.isfinite(reward).all() else "observations"
            raise EnvFailed(f"env {self.name} returned non-finite {what} in vector step {self.steps}", "non-finite")
        self._obs = obs
        self._note_cut(np.asarray(terminated) | np.asarray(truncated), np.asarray(truncated), some)
        return obs, reward, terminated, truncated, final

    def _note_cut(self, ended: np.ndarray, truncated: np.ndarray, some: np.ndarray | None) -> None:
        """Says once per process, when it happens, that the default time limit cut an episode."""
        self._lengths[slice(None) if some is None else some] += 1
        if self._default_cap and self.name not in _NOTED and \
                (truncated & (self._lengths >= self._default_cap)).any():
            _NOTED.add(self.name)
            print(time_limit_note(self.name), flush=True)
        self._lengths[ended] = 0

    def _step(self, env_actions, some: np.ndarray | None):
        if self._pool is not None:
            return self._envpool_step(env_actions, some)
        if some is not None:
            return self._sync_step_some(env_actions, some)
        raw, reward, terminated, truncated, info = self._vector_call("step", actions=env_actions)
        self.reports = reported(info, self.n)
        obs = self.env.to_observation(raw)
        final = obs
        if "final_obs" in info:
            final = _copy(obs)
            for i in np.flatnonzero(info["_final_obs"]):
                _set_rows(final, i, self.env.to_observation(info["final_obs"][i], batched=False))
        return obs, np.asarray(reward, np.float32), np.asarray(terminated), np.asarray(truncated), final

    def _envpool_step(self, env_actions, some: np.ndarray | None):
        if some is None:
            raw, reward, terminated, truncated, info = self._pool.step(env_actions)
            obs = self.env.to_observation(self._ordered(raw, info))
            reward, terminated, truncated = (self._ordered(x, info) for x in (reward, terminated, truncated))
        else:  # the envs in `some` only: their rows, in the order envpool answers
            raw, stepped, ended, cut, info = self._pool.step(_rows(env_actions, some), some)
            obs, rows = _copy(self._obs), info["env_id"]
            _set_rows(obs, rows, self.env.to_observation(raw))
            reward, terminated, truncated = np.zeros(self.n, np.float32), np.zeros(self.n, bool), np.zeros(self.n, bool)
            reward[rows], terminated[rows], truncated[rows] = stepped, ended, cut
        final, done = _copy(obs), np.flatnonzero(terminated | truncated)
        if len(done):  # envpool resets on the next call: reset the ended envs now, same step
            raw, _, _, _, info = self._pool.step(_rows(env_actions, done), done)
            _set_rows(obs, info["env_id"], self.env.to_observation(raw))
        return obs, np.asarray(reward, np.float32), np.asarray(terminated), np.asarray(truncated), final

    def _sync_step_some(self, env_actions, some: np.ndarray):
        """gymnasium's sync step (same-step auto-reset, unseeded as gymnasium's) of the envs in `some` alone."""
        obs, final, vector, info = _copy(self._obs), _copy(self._obs), self._vector, {}
        reward, terminated, truncated = np.zeros(self.n, np.float32), np.zeros(self.n, bool), np.zeros(self.n, bool)
        for i in some:
            env = vector.envs[i]
            raw, reward[i], terminated[i], truncated[i], env_info = env.step(_rows(env_actions, i))
            _set_rows(final, i, self.env.to_observation(raw, batched=False))
            if terminated[i] or truncated[i]:
                info = vector._add_info(info, {"final_info": env_info}, i)
                raw, env_info = env.reset()
            info = vector._add_info(info, env_info, i)
            _set_rows(obs, i, self.env.to_observation(raw, batched=False))
        self.reports = reported(info, self.n)
        return obs, reward, terminated, truncated, final

    def close(self) -> None:
        """Closes the envs; worker processes end (killed, if one died mid-call and left the others waiting)."""
        if self._pool is not None:
            self._pool.close()
        vector = self._vector
        if vector is not None and self._hung:  # its envs are inside a call that never returned: leave them be
            vector = None
        if vector is not None:
            try:
                vector.close(**({"terminate": True, "timeout": 5} if hasattr(vector, "processes") else {}))
            except Exception:  # a worker died mid-call: end the others directly
                for process in getattr(vector, "processes", []):
                    process.kill()
                    process.join(5)
                vector.closed = True
        self._pool = self._vector = None
