"""The host collector: Python envs stepped in a vector env on the host, the jitted policy acting on the whole batch,
and the very learners the JAX-env collector feeds (`Algorithm.update` on a time-major `Trajectory`).

PPO, A2C, SAC and IMPALA overlap acting and learning as Sebulba does: an actor thread collects rollout r with the
parameters of update r - 1 while the learner computes update r - 1, through a queue of one rollout. The lag is exact
(never more, never less), so a seed still gives the same run. `policy_lag=0` collects in the learner's thread,
strictly on-policy. A learner of fresh episodes (ES) gets one episode per env of its batch (one per population
member), queued over the host's envs, always on-policy.
"""

from __future__ import annotations

import functools
import queue
import threading
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import Trajectory
from maze_jax.algorithms.metrics import episode_table, epoch_totals, event_statistics
from maze_jax.collectors import EnvFailed, Trainer, TrainState
from maze_jax.collectors.jax_envs import row_by_row
from maze_jax.envs import EnvSpec, EpisodeStats
from maze_jax.envs.episodes import EventStats, Recording, reset_memory
from maze_jax.envs.structured import sub_steps
from maze_jax.models.recurrent import act_with_memory, policy_memory
from maze_jax.shell.collectors import envpool_xla
from maze_jax.shell.collectors.vector_env import DEFAULT_TIME_LIMIT, VectorEnv
from maze_jax.shell.settings import HostSettings


def agent_keys(learner_keys: jax.Array, salt: int, index: int) -> jax.Array:
    """The keys a rollout acts with (one per seed): the agent's stream of each seed (the learner's key, which every
    update moves on), folded with `salt` (0: training rollouts, 1: a replay learner's warm-up, as on JAX envs) and
    the rollout's index, so that two rollouts of one parameter version never share their noise. The envs' own
    randomness comes from the env stream: a new `seeding.env_base_seed` changes the envs, not the agent's draws.
    Jitted, salt and index traced: an eager vmap traces on every call (2 ms, as long as a rollout of one step)."""
    return _agent_keys(learner_keys, salt, index)


_agent_keys = jax.jit(jax.vmap(lambda key, salt, index: jax.random.fold_in(jax.random.fold_in(key, salt), index),
                               in_axes=(0, None, None)))
fold_in = jax.jit(jax.random.fold_in)  # once per rollout: 30 us jitted, 0.5 ms eager
flat_parameters = jax.jit(lambda params: ravel_pytree(params)[0])  # 1.3 ms eager (a concatenation per call)


def normalizer(env_spec: EnvSpec) -> Callable:
    """The env's observation normalisation (identity without it), applied inside the jitted functions."""
    return getattr(env_spec.env, "normalize_observation", lambda obs: obs)


def to_numpy(tree):
    """A tree of (single-device) arrays as numpy arrays: what the envs take every step. `np.asarray` per leaf
    costs about 2 us a call where `jax.device_get` costs 7 (2-core CPU), and the host actor pays it every step."""
    return jax.tree.map(np.asarray, tree)


def seed_of(key: jax.Array) -> int:
    """An integer seed for gymnasium or envpool from a JAX key."""
    return int(jax.random.randint(key, (), 0, 2**31 - 1))


class Episodes:
    """Running returns and lengths of `n` envs, and the episodes that ended (return, length), per env; with the
    events and KPIs the envs report (`reports`), their statistics (`EventStats`, in numpy) since the last take."""

    def __init__(self, n: int):
        self.returns, self.lengths = np.zeros(n), np.zeros(n, np.int64)
        self.ended: list[tuple[int, float, int]] = []  # (env, return, length)
        self.events: EventStats | None = None
        self.totals: dict = {}

    def add(self, reward, done, reports: tuple[dict, dict] = ({}, {}), counted: np.ndarray | None = None) -> np.ndarray:
        """One step of every env; `counted` (bool per env) leaves the others (idle envs) out of every statistic."""
        if counted is not None:
            reward, done = np.where(counted, reward, 0.0), done & counted
        self.returns += reward
        self.lengths += 1
        events, kpis = reports
        if events or kpis or self.events is not None:
            if self.events is None:
                self.events = EventStats.zeros(len(done), (), (), np)
            if set(events) - set(self.totals) or set(kpis) - set(self.events.kpi_sum):  # names reported first now
                self.events = self.events.with_names(events, kpis)
                self.totals.update({k: np.zeros(len(done), np.float32) for k in events if k not in self.totals})
            totals = {k: v + events.get(k, 0.0) for k, v in self.totals.items()}
            self.events = self.events.add(np.asarray(done), {k: events.get(k, 0.0) for k in self.totals}, totals,
                                          {k: kpis.get(k, 0.0) for k in self.events.kpi_sum}, counted)
            self.totals = {k: np.where(done, 0.0, v).astype(np.float32) for k, v in totals.items()}
        ended = np.flatnonzero(done)
        self.ended += [(int(i), float(self.returns[i]), int(self.lengths[i])) for i in ended]
        self.returns[ended], self.lengths[ended] = 0.0, 0
        return ended

    def take(self) -> list:
        ended, self.ended = self.ended, []
        return ended

    def take_events(self) -> EventStats | None:
        """The event statistics since the last take (None when the envs report none)."""
        events = self.events
        if events is not None:
            self.events = EventStats.zeros(len(self.returns), tuple(events.step_sum), tuple(events.kpi_sum), np)
        return events


def event_rows(snapshots: list) -> dict:
    """The training rows of the events and KPIs in `snapshots` (`Episodes.take_events`, None where none)."""
    snapshots = [e for e in snapshots if e is not None]
    if not snapshots:
        return {}
    merged = functools.reduce(lambda a, b: a.merge(b), snapshots)
    return {k: np.asarray(v) for k, v in event_statistics(merged, "train").items()}


def episode_metrics(ended: list, n_seeds: int, envs_per_seed: int, steps: int) -> dict:
    """Training reward rows (arrays over seeds) of the episodes that ended: as the JAX collector's."""
    per_seed = [[(r, n) for env, r, n in ended if env // envs_per_seed == s] for s in range(n_seeds)]
    width = max([len(p) for p in per_seed] + [1])
    returns, lengths, mask = (np.zeros((n_seeds, width)) for _ in range(3))
    for s, episodes in enumerate(per_seed):
        for i, (r, n) in enumerate(episodes):
            returns[s, i], lengths[s, i], mask[s, i] = r, n, 1
    rows = episode_table(returns, lengths, "train", per_seed=True, ended=mask.astype(bool))
    rows["train_BaseEnvEvents/reward/step_count"] = np.full(n_seeds, steps // n_seeds)
    return rows


def time_major(buffers, n_seeds: int):
    """(T, S * N, ...) host buffers as (S, T, N, ...) device arrays."""
    def move(x):
        x = np.asarray(x)
        x = x.reshape(x.shape[:1] + (n_seeds, -1) + x.shape[2:])
        return jnp.asarray(np.swapaxes(x, 0, 1))

    return jax.tree.map(move, buffers)


class Memory:
    """A recurrent policy's memory of `n` host envs, on the device (a leading env axis, or `lead` axes), kept from
    step to step and set to zeros before the step after an env's episode ended. Empty, and free, for a policy
    without one."""

    def __init__(self, initial_memory, lead: tuple):
        self.lead = lead
        self.memory = jax.tree.map(lambda m: m.reshape(lead + m.shape[1:]), initial_memory(int(np.prod(lead))))
        self.ended = np.zeros(lead, bool) if jax.tree.leaves(self.memory) else None

    def current(self):
        """The memory to act with (episodes that ended since the last step start from zeros)."""
        if self.ended is not None and self.ended.any():
            self.memory = reset_memory(self.memory, jnp.asarray(self.ended))
            self.ended[:] = False
        return self.memory

    def set(self, memory) -> None:
        """The memory after a step."""
        self.memory = memory

    def reset(self, done) -> None:
        """The envs whose episodes ended (flat or `lead`-shaped): their memory starts from zeros."""
        if self.ended is not None:
            self.ended |= np.asarray(done, bool).reshape(self.lead)


class RolloutCollector:
    """Rollouts of `n_steps` steps from `n_seeds * n_envs` Python envs under `explore(params, obs, key, memory)`
    (vmapped over seeds, each seed acting with its own agent key): time-major `Trajectory`s with a leading seed
    axis, plus the episodes that ended."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_envs: int, n_steps: int, n_seeds: int,
                 seed: int, vectorization: str):
        self.n_envs, self.n_steps, self.n_seeds = n_envs, n_steps, n_seeds
        normalize = normalizer(env_spec)

        def act(flat_params, obs, keys, memory, unravel):
            """Actions for the envs' observations, the experience to keep, the memory after them and the next
            step's keys (one per seed). The parameters arrive as one flat vector and the keys stay on the device:
            fewer arguments to hand over every step."""
            obs = jax.tree.map(lambda x: x.reshape((n_seeds, n_envs) + x.shape[1:]), obs)
            keys, step_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
            explore = lambda p, o, k, m: algorithm.explore(p, normalize(o), k, m)  # noqa: E731
            action, experience, memory = jax.vmap(explore)(unravel(flat_params), obs, step_keys, memory)
            flat = lambda x: x.reshape((n_seeds * n_envs,) + x.shape[2:])  # noqa: E731
            return jax.tree.map(flat, action), jax.tree.map(flat, experience), memory, keys

        def stack(experiences):  # (T, S * N, ...) -> (S, T, N, ...)
            return jax.tree.map(lambda *xs: jnp.swapaxes(jnp.stack(xs).reshape(
                (len(xs), n_seeds, n_envs) + xs[0].shape[1:]), 0, 1), *experiences)

        self.act, self.stack = act, jax.jit(stack)  # `act` compiles at the first rollout, which shows the params
        self._jitted_act = None
        self.envs = VectorEnv(env_spec.env, n_seeds * n_envs, seed, vectorization)
        self.episodes = Episodes(n_seeds * n_envs)
        self.memory = Memory(algorithm.initial_memory, (n_seeds, n_envs))

    def collect(self, params, act_keys, env_key=None, should_stop: Callable = lambda: False):
        """One rollout acting with `params` (what `Algorithm.acting` gives, leading seed axis) and `act_keys` (one
        per seed; the envs, seeded when built, need no `env_key`): the env actions come to the host every step, the
        rest of the policy's outputs stay on the device until the rollout is complete.
        Returns the Trajectory (S, T, N, ...), the episodes that ended, the envs' EventStats and the steps taken;
        None when `should_stop()` turned true first."""
        columns = {"obs": [], "reward": [], "terminated": [], "truncated": [], "final_obs": []}
        experiences = []
        flat_params = flat_parameters(params)
        if self._jitted_act is None:  # every rollout's parameters have the same layout
            self._jitted_act = jax.jit(functools.partial(self.act, unravel=ravel_pytree(params)[1]))
        for _ in range(self.n_steps):
            if should_stop():
                return None
            obs = self.envs.obs
            action, experience, memory, act_keys = self._jitted_act(flat_params, obs, act_keys, self.memory.current())
            _, reward, terminated, truncated, final = self.envs.step(to_numpy(action))
            self.memory.set(memory)
            self.memory.reset(terminated | truncated)
            self.episodes.add(reward, terminated | truncated, self.envs.reports)
            experiences.append(experience)
            for name, value in (("obs", obs), ("reward", reward), ("terminated", terminated),
                                ("truncated", truncated), ("final_obs", final)):
                columns[name].append(value)
        stacked = {k: jax.tree.map(lambda *xs: np.stack(xs), *v) for k, v in columns.items()}
        experience = self.stack(experiences)
        last = jax.tree.map(lambda x: jnp.asarray(x.reshape((self.n_seeds, self.n_envs) + x.shape[1:])),
                            self.envs.obs)
        return Trajectory(**time_major(stacked, self.n_seeds), **experience._asdict(), last_obs=last), \
            self.episodes.take(), self.episodes.take_events(), self.n_steps * self.n_seeds * self.n_envs

    def interrupt(self) -> None:
        """Nothing to cut short: a local rollout ends in its own time (the `Pipeline` calls this on close)."""

    def overdue(self) -> str:
        """'' unless an env call of a rollout in another thread ran past runner.env_step_timeout_s (`VectorEnv`)."""
        return self.envs.overdue()

    def close(self) -> None:
        self.envs.close()


class EpisodeCollector:
    """Fresh episodes for a learner of whole episodes (`Algorithm.fresh_episodes`, ES): each of the `n_seeds *
    n_envs` columns of `acting` (leading seed and env axes) plays one episode, queued over `n_slots` Python envs
    capped at the algorithm's `episode_cap` whole steps. Column c and c + n_envs / 2 of a seed (an antithetic pair)
    start from envs seeded alike (not on envpool, which seeds its envs once) and share their sampling keys step by
    step; envs left idle count in no statistic. `collect(acting, act_keys, env_key)` (one agent key per seed; the
    env stream's key seeds the envs) gives a Trajectory (S, T, N, ...) padded after
    each column's episode to T, the next power of two of the longest (so the learner compiles for a few lengths
    only), with the episodes that ended, the envs' EventStats and the env steps taken."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_slots: int, n_seeds: int, seed: int,
                 vectorization: str):
        self.n_envs, self.n_seeds, self.initial_memory = algorithm.config.n_envs, n_seeds, algorithm.initial_memory
        explore, normalize, half = row_by_row(algorithm.explore), normalizer(env_spec), max(self.n_envs // 2, 1)

        def act(acting, columns, obs, act_keys, t, memory):
            flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), acting)
            seed, pair = columns // self.n_envs, columns % self.n_envs % half
            keys = jax.vmap(lambda k, p, s: jax.random.fold_in(jax.random.fold_in(k, p), s))(act_keys[seed], pair, t)
            return explore(jax.tree.map(lambda x: x[columns], flat), normalize(obs), keys, memory)

        self.act = jax.jit(act)
        if getattr(env_spec.env, "envpool_id", None):
            print(f"Note: envpool seeds its envs once, when it builds them: {algorithm.name}'s antithetic pairs "
                  f"start from different states of {env_spec.name} (env.backend=gymnasium starts them alike)",
                  flush=True)
        cap = algorithm.episode_cap * max(len(sub_steps(env_spec.env)), 1)  # calls of `step`
        self.envs = VectorEnv(env_spec.env, n_slots, seed, vectorization, cap or None)

    def collect(self, acting, act_keys, env_key, should_stop: Callable = lambda: False, columns: list | None = None):
        """Every column (or those in `columns`, indices into the seed-flattened columns; the others stay zeros)
        plays one episode, from envs seeded by `env_key`, acting with `act_keys` (one per seed); None when
        `should_stop()` turned true first."""
        envs, n_slots, n_columns = self.envs, self.envs.n, self.n_seeds * self.n_envs
        base, half = seed_of(env_key), max(self.n_envs // 2, 1)
        pair_seeds = lambda cols: base + cols // self.n_envs * self.n_envs + cols % self.n_envs % half  # noqa: E731
        queued = list(range(n_columns)) if columns is None else list(columns)
        active = np.arange(n_slots) < len(queued)
        columns = np.array([queued.pop(0) if queued else 0 for _ in range(n_slots)])
        if not envs.reset_some(np.ones(n_slots, bool), np.where(active, pair_seeds(columns), base + n_columns
                                                                 + np.arange(n_slots))):
            envs.reset(base)  # envpool: its envs were seeded when it built them
        t, lengths = np.zeros(n_slots, np.int32), np.zeros(n_columns, np.int64)
        memory = Memory(self.initial_memory, (n_slots,))
        episodes, ended, steps = Episodes(n_slots), [], []
        while active.any():
            if should_stop():
                return None
            obs = envs.obs
            action, experience, after = self.act(acting, columns, obs, act_keys, t, memory.current())
            action, experience = to_numpy((action, experience))
            _, reward, terminated, truncated, final = envs.step(action, active)  # idle slots wait
            done = terminated | truncated
            memory.set(after)
            memory.reset(done)
            episodes.add(reward, done, envs.reports, counted=active)
            steps.append((columns[active], t[active], np.flatnonzero(active), obs, experience, reward, terminated,
                          truncated, final))
            t += 1
            started = np.zeros(n_slots, bool)
            for slot, ret, length in episodes.take():
                ended.append((int(columns[slot]), ret, length))
                lengths[columns[slot]] = length
                t[slot] = 0
                if queued:
                    columns[slot], started[slot] = queued.pop(0), True
                else:
                    active[slot] = False
            if started.any():  # the next members start as their pairs do
                envs.reset_some(started, pair_seeds(columns))
        return self._padded(steps, lengths), ended, episodes.take_events(), int(lengths.sum())

    def _padded(self, steps: list, lengths: np.ndarray) -> Trajectory:
        """The steps (per step: the active slots' columns, their episodes' step indices, the slots, then the envs'
        data) as a Trajectory (S, T, N, ...), zeros where a column's episode had ended."""
        horizon = 1 << int(max(lengths.max(), 1) - 1).bit_length()
        n_seeds, n_envs = self.n_seeds, self.n_envs

        def scatter(field: Callable):  # field(k): step k's data of every slot -> (T, columns, ...)
            out = jax.tree.map(lambda x: np.zeros((horizon, n_seeds * n_envs) + x.shape[1:], x.dtype), field(0))
            for k, (columns, ts, slots, *_) in enumerate(steps):
                jax.tree.map(lambda o, x: o.__setitem__((ts, columns), x[slots]), out, field(k))
            return out

        obs, experience, reward, terminated, truncated, final_obs = (
            scatter(lambda k, i=i: jax.tree.map(np.asarray, steps[k][i])) for i in (3, 4, 5, 6, 7, 8))
        def by_seed(x):  # (T, S * N, ...) -> (S, T, N, ...)
            return jnp.asarray(np.swapaxes(x.reshape(x.shape[:1] + (n_seeds, n_envs) + x.shape[2:]), 0, 1))

        def per_column(x):  # (S * N, ...) -> (S, N, ...)
            return jnp.asarray(x).reshape((n_seeds, n_envs) + x.shape[1:])

        last = jax.tree.map(lambda x: x[np.maximum(lengths - 1, 0), np.arange(n_seeds * n_envs)], final_obs)
        return Trajectory(jax.tree.map(by_seed, obs), jax.tree.map(by_seed, experience.action),
                          by_seed(experience.log_prob), by_seed(experience.value), by_seed(reward),
                          by_seed(terminated), by_seed(truncated), jax.tree.map(by_seed, final_obs),
                          jax.tree.map(per_column, last), jax.tree.map(by_seed, experience.memory))

    def interrupt(self) -> None:
        """Nothing to cut short: the learner's thread collects (no actor thread for fresh episodes)."""

    def close(self) -> None:
        self.envs.close()


class Pipeline:
    """Rollouts for the learner: rollout r collected with version r - `lag` of the learner (version v: after v
    updates), in an actor thread when `lag` is 1, in the caller's thread when 0. A version is what the actors act
    with and the learner's keys then (one per seed): rollout r acts with `agent_keys(keys, 0, r)` and seeds its
    envs from `fold_in(env_key, r)`. An actor's exception comes out of `next()`. `publish(acting, keys)` hands the
    learner's new version over; `close()` calls `interrupt()` first, to cut a rollout in flight short. While the
    learner waits for the actor, `overdue()` ('' or why) says whether the actor's envs stopped answering: the learner
    then raises EnvFailed and leaves the actor behind."""

    def __init__(self, collect: Callable, acting, learner_keys, env_key, lag: int,
                 interrupt: Callable = lambda: None, overdue: Callable[[], str] = lambda: ""):
        self.collect, self.key, self.lag, self.interrupt, self.overdue = collect, env_key, lag, interrupt, overdue
        self.hung = False
        self.versions, self.version, self.index = {0: (acting, learner_keys)}, 0, 0
        self.cond, self.stopped = threading.Condition(), threading.Event()
        self.rollouts: queue.Queue = queue.Queue(maxsize=1)
        self.thread = None
        if lag:
            self.thread = threading.Thread(target=self._actor, name="maze_jax-actor", daemon=True)
            self.thread.start()

    def _rollout(self, version, index: int, should_stop: Callable = lambda: False):
        acting, learner_keys = version
        return self.collect(acting, agent_keys(learner_keys, 0, index), fold_in(self.key, index),
                            should_stop)

    def _version_for(self, index: int):
        with self.cond:
            wanted = max(index - self.lag, 0)
            while wanted not in self.versions and not self.stopped.is_set():
                self.cond.wait(0.1)
            return self.versions.get(wanted)

    def _actor(self) -> None:
        index = 0
        while not self.stopped.is_set():
            try:
                version = self._version_for(index)
                if version is None:
                    return
                item = self._rollout(version, index)
            except BaseException as error:  # handed to the learner, which stops the run
                item = error
            while not self.stopped.is_set():
                try:
                    self.rollouts.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            index += 1

    def next(self, should_stop: Callable = lambda: False):
        """The next rollout, or None when `should_stop()` turned true while waiting (or collecting, without lag)."""
        if not self.lag:
            item = self._rollout(self.versions[self.version], self.index, should_stop)
            if item is None:
                return None
        else:
            while True:
                try:
                    item = self.rollouts.get(timeout=0.05)
                    break
                except queue.Empty:
                    if should_stop():
                        return None
                    if late := self.overdue():
                        self.hung = True
                        raise EnvFailed(late)
        self.index += 1
        if isinstance(item, BaseException):
            raise item
        return item

    def publish(self, acting, learner_keys) -> None:
        with self.cond:
            self.version += 1
            self.versions[self.version] = (acting, learner_keys)
            for old in [v for v in self.versions if v < self.version - self.lag]:
                del self.versions[old]
            self.cond.notify_all()

    def close(self) -> None:
        self.stopped.set()
        self.interrupt()
        with self.cond:
            self.cond.notify_all()
        if self.thread is not None and not self.hung:  # a hung actor ends with the process
            self.thread.join(timeout=30)


class HostEvaluator:
    """Deterministic (or sampled) episodes of the policy on `n_seeds * n_episodes` Python envs, one per env:
    the EpisodeStats the JAX collector's evaluation gives, with a leading seed axis, and with `record` the steps
    taken (a `Recording` of all the envs, time-major, until every env ended its first episode).

    Called with the policy's parameters (a leading seed axis) and a key."""

    def __init__(self, policy, env_spec: EnvSpec, n_episodes: int, n_seeds: int, deterministic: bool,
                 vectorization: str = "sync", max_steps: int = DEFAULT_TIME_LIMIT, record: bool = False):
        self.env_spec, self.n_episodes, self.n_seeds, self.vectorization = env_spec, n_episodes, n_seeds, vectorization
        self.record = record
        self.max_steps = env_spec.env.max_episode_steps or max_steps
        normalize = normalizer(env_spec)

        def act(params, obs, key, t, memory):
            obs = jax.tree.map(lambda x: x.reshape((n_seeds, n_episodes) + x.shape[1:]), obs)
            keys = jax.random.split(jax.random.fold_in(key, t), n_seeds)
            action, memory = jax.vmap(lambda p, o, k, m: act_with_memory(policy, p, normalize(o), k, deterministic, m))(
                params, obs, keys, memory)
            return jax.tree.map(lambda x: x.reshape((n_seeds * n_episodes,) + x.shape[2:]), action), memory

        self.act, self.policy = jax.jit(act), policy
        self.envs = None

    def __call__(self, params, key, should_stop: Callable = lambda: False):
        """The episodes' EpisodeStats (and the recorded steps), or None when `should_stop()` turned true first (a
        slow env's evaluation can take minutes: a signal does not wait for it)."""
        n = self.n_seeds * self.n_episodes
        if self.envs is None:
            self.envs = VectorEnv(self.env_spec.env, n, seed_of(key), self.vectorization)
        else:
            self.envs.reset(seed_of(key))
        first_return, first_length, ended = np.zeros(n, np.float32), np.zeros(n, np.int32), np.zeros(n, bool)
        episodes, steps = Episodes(n), []
        memory = Memory(functools.partial(policy_memory, self.policy), (self.n_seeds, self.n_episodes))
        for t in range(self.max_steps):
            if should_stop():
                return None
            obs = self.envs.obs
            action, new_memory = self.act(params, obs, key, t, memory.current())
            action = to_numpy(action)
            _, reward, terminated, truncated, _ = self.envs.step(action, ~ended)  # ended envs wait
            memory.set(new_memory)
            memory.reset(terminated | truncated)
            if self.record:
                steps.append(Recording(obs, action, reward, terminated, truncated))
            episodes.add(reward, terminated | truncated)
            for env, ret, length in episodes.take():
                if not ended[env]:
                    first_return[env], first_length[env], ended[env] = ret, length, True
            if ended.all():
                break
        shape = (self.n_seeds, self.n_episodes)
        count = ended.astype(np.int32).reshape(shape)
        ret, length = first_return.reshape(shape), first_length.reshape(shape)
        none = np.zeros(shape, np.int32)  # non-finite data already raised in the vector env
        stats = EpisodeStats(count, ret, np.zeros(shape, np.float32), ret, ret, length, ret, length,
                             np.zeros((self.n_seeds, 1), np.int32), none, none)
        if not self.record:
            return stats
        return stats, jax.tree.map(lambda *xs: np.stack(xs), *steps)

    def close(self) -> None:
        if self.envs is not None:
            self.envs.close()


class BufferInPlace:
    """`step(learner, trajectory)` vmapped over seeds and jitted, with a replay learner's buffer (`learner.buffer`)
    donated, so that XLA writes the new transitions into it rather than into a copy of the whole buffer on every call
    (SAC's million transitions of Taxi's one-hot observations: 3.7 GiB a call, minutes per epoch). Called as
    `(learner, trajectory, in_place)`: only a learner that no one else holds may go `in_place`, one made by an
    earlier call of the same epoch; any other (the state the training loop keeps: a stopped epoch leaves the loop its
    last good state, buffer included) gives a copy of its buffer, once per epoch as on JAX envs."""

    def __init__(self, step: Callable):
        self.step = jax.jit(jax.vmap(lambda rest, buffer, *args: step(rest.replace(buffer=buffer), *args)),
                            donate_argnums=1)
        self.plain = jax.jit(jax.vmap(step))  # a learner without a buffer

    def __call__(self, learner, trajectory, in_place: bool = False):
        if not hasattr(learner, "buffer"):
            return self.plain(learner, trajectory)
        buffer = learner.buffer if in_place else jax.tree.map(jnp.copy, learner.buffer)
        return self.step(learner.replace(buffer=()), buffer, trajectory)


def rollout_host_trainer(algorithm: Algorithm, env_spec: EnvSpec, n_seeds: int, settings: HostSettings,
                         make_collector: Callable | None = None) -> Trainer:
    """Any learner (`Algorithm`) on a Python env: `epoch_length` updates per call of `train_epoch`, fed by a
    RolloutCollector (an EpisodeCollector for a learner of fresh episodes, always on-policy), or by what
    `make_collector(seed)` builds instead (their protocol: collect(acting, act_keys, env_key, should_stop),
    interrupt(), close()).
    A replay learner's warm-up rollouts are collected first, before update 0. Seed-batched: `init` takes one agent
    key per seed (`collectors.seeds.with_seeds`)."""
    config = algorithm.config
    normalize = normalizer(env_spec)

    def normalized(trajectory):
        return trajectory._replace(obs=normalize(trajectory.obs), final_obs=normalize(trajectory.final_obs),
                                   last_obs=normalize(trajectory.last_obs))

    update = BufferInPlace(lambda state, trajectory: algorithm.update(state, normalized(trajectory)))
    warmup = BufferInPlace(lambda state, trajectory: algorithm.warmup(state, normalized(trajectory)))
    acting = jax.jit(jax.vmap(algorithm.acting))
    evaluator = HostEvaluator(algorithm.policy, env_spec, config.n_eval_episodes, n_seeds, config.deterministic_eval,
                              settings.vectorization)
    running: dict = {}

    def warm_up(collector, learner, env_key, should_stop: Callable):
        """A fresh learner (no update yet) with its warm-up rollouts stored, or None if stopped meanwhile."""
        for i in range(-(-algorithm.warmup_steps // config.n_rollout_steps)):
            if should_stop():
                return None
            rollout = collector.collect(acting(learner), agent_keys(learner.key, 1, i), fold_in(env_key, i),
                                        should_stop)
            if rollout is None:
                return None
            learner = warmup(learner, rollout[0], in_place=i > 0)  # the first keeps the caller's learner
        return learner

    def start(state: TrainState, should_stop: Callable) -> TrainState | None:
        """The collector and its pipeline, (re)started from a state's env key (fresh envs: Python env states are
        not checkpointed), after the warm-up of a fresh replay learner. Returns the state to train on."""
        env_key, pipeline_key = jax.random.split(state.envs)
        if make_collector:
            collector = make_collector(seed_of(env_key))
        elif algorithm.fresh_episodes:
            collector = EpisodeCollector(algorithm, env_spec, settings.n_envs * n_seeds, n_seeds, seed_of(env_key),
                                         settings.vectorization)
        else:
            collector = RolloutCollector(algorithm, env_spec, config.n_envs, config.n_rollout_steps, n_seeds,
                                         seed_of(env_key), settings.vectorization)
        running["collector"] = collector
        if algorithm.warmup_steps and not np.any(jax.device_get(state.learner.step)):
            learner = warm_up(collector, state.learner, jax.random.fold_in(pipeline_key, 1), should_stop)
            if learner is None:
                return None
            state = state.replace(learner=learner)
        lag = 0 if algorithm.fresh_episodes else settings.policy_lag  # episodes of the population being updated
        running.update(pipeline=Pipeline(collector.collect, acting(state.learner), state.learner.key, pipeline_key,
                                         lag, collector.interrupt, getattr(collector, "overdue", lambda: "")),
                       state=state)
        return state

    def env_steps() -> int:
        """Env steps taken by the training envs: this process's `envs`, envpool's jitted rollouts, or the Ray
        `workers`' rollouts."""
        collector = running.get("collector")
        counter = getattr(collector, "envs", None) or getattr(collector, "workers", None) or collector
        return getattr(counter, "env_steps", 0)

    def train_epoch(state: TrainState, should_stop: Callable = lambda: False):
        running["epoch_start"] = env_steps()
        if running.get("state") is not state:  # a fresh or restored state: (re)start the collector from it
            close()
            running["epoch_start"] = 0  # new envs count from 0; the warm-up's steps belong to the epoch
            state = start(state, should_stop)
            if state is None:
                return None
        pipeline = running["pipeline"]
        learner, infos, ended, snapshots, steps = state.learner, [], [], [], 0
        for i in range(config.epoch_length):
            rollout = pipeline.next(should_stop)
            if rollout is None:
                return None
            trajectory, episodes, events, taken = rollout
            snapshots.append(events)
            steps += taken
            learner, info = update(learner, trajectory, in_place=i > 0)  # the first keeps `state`, the loop's
            pipeline.publish(acting(learner), learner.key)
            infos.append(info)
            ended += episodes
        metrics = {**epoch_totals(jax.tree.map(lambda *xs: jnp.stack(xs), *infos)),
                   **episode_metrics(ended, n_seeds, config.n_envs, steps), **event_rows(snapshots)}
        new_state = TrainState(learner, jax.random.fold_in(state.envs, 1))
        running["state"] = new_state
        return new_state, metrics

    def close():
        for part in ("pipeline", "collector"):
            if running.get(part) is not None:
                running.pop(part).close()
        running.pop("state", None)

    return finish_host_trainer(algorithm, train_epoch, evaluator, close, n_seeds,
                               lambda: env_steps() - running.get("epoch_start", 0))


def finish_host_trainer(algorithm: Algorithm, train_epoch: Callable, evaluator: HostEvaluator,
                        close: Callable, n_seeds: int, epoch_env_steps: Callable[[], int]) -> Trainer:
    """A seed-batched host trainer's record: one learner per agent key (`init(agent_keys, env_key,
    hyperparams=None)`, the env key kept as it is: one for every seed's envs), evaluation by `evaluator`, a
    `close` that closes the evaluator too, and `epoch_env_steps` (the running epoch's env steps so far)."""
    def init(agent_keys, env_key, hyperparams=None):
        hparams = algorithm.hyperparams if hyperparams is None else hyperparams
        per_member = jax.tree.leaves(hparams)[0].ndim > 0  # a grid's: one value per member
        return TrainState(jax.vmap(algorithm.init, in_axes=(0, 0 if per_member else None))(agent_keys, hparams),
                          env_key)

    def evaluate(state: TrainState, key, should_stop: Callable = lambda: False):
        return evaluator(state.learner.params["policy"], key, should_stop)

    def close_all():
        close()
        evaluator.close()

    return Trainer(algorithm, init, train_epoch, evaluate, algorithm.config.n_eval_episodes, n_seeds, on_host=True,
                   close=close_all, epoch_env_steps=epoch_env_steps)


def host_trainer(algorithm: Algorithm, env_spec: EnvSpec, n_seeds: int, settings: HostSettings) -> Trainer:
    """The trainer of `algorithm` on a Python env: from envpool's jitted rollouts where they fit
    (`envpool_xla.fits`), else from envs stepped in Python."""
    config, make_collector = algorithm.config, None
    if envpool_xla.fits(algorithm, env_spec):
        make_collector = lambda seed: envpool_xla.EnvpoolRollouts(  # noqa: E731
            algorithm, env_spec, config.n_envs, config.n_rollout_steps, n_seeds, seed, normalizer(env_spec))
    return rollout_host_trainer(algorithm, env_spec, n_seeds, settings, make_collector)


def sample_host_observations(env_spec: EnvSpec, act: Callable, n_samples: int, key, n_envs: int = 32):
    """`n_samples` observations of `n_envs` Python envs under `act(obs, key) -> actions` (stacked, numpy)."""
    envs = VectorEnv(env_spec.env, n_envs, seed_of(key))
    step_act, collected = jax.jit(lambda obs, key, t: act(obs, jax.random.fold_in(key, t))), []
    try:
        for t in range(-(-n_samples // n_envs)):
            collected.append(envs.obs)
            envs.step(to_numpy(step_act(envs.obs, key, t)))
    finally:
        envs.close()
    return jax.tree.map(lambda *xs: np.concatenate(xs)[:n_samples], *collected)
