"""Batched, auto-resetting rollouts that accumulate statistics of finished episodes inside the scan.

Statistics are kept per env as running sums (plus a histogram of episode lengths for the median), so a rollout
of any length returns a few fixed-size arrays instead of (steps, envs) records.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.collectors.devices import shard_batch


class EventStats(NamedTuple):
    """Per env, by name: the events an env reports in `info["events"]` each step (step sums, maxima, and the totals
    of finished episodes) and the KPIs it reports in `info["kpis"]` (their values when episodes finish: sum, sum of
    squares, min, max). Maze's event and KPI statistics; the names are the dicts' keys."""

    step_sum: dict
    step_max: dict
    episode_total: dict
    steps: jax.Array
    episodes: jax.Array
    kpi_sum: dict
    kpi_sq: dict
    kpi_min: dict
    kpi_max: dict

    @classmethod
    def zeros(cls, n_envs: int, events: tuple, kpis: tuple, xp=jnp) -> EventStats:
        """No events yet (`xp=np`: numpy arrays, for Python envs on the host)."""
        f, i = xp.zeros(n_envs, xp.float32), xp.zeros(n_envs, xp.int32)
        by = lambda names, value: {name: value for name in names}  # noqa: E731
        return cls(by(events, f), by(events, f - jnp.inf), by(events, f), i, i, by(kpis, f), by(kpis, f),
                   by(kpis, f + jnp.inf), by(kpis, f - jnp.inf))

    def add(self, done: jax.Array, events: dict, totals: dict, kpis: dict, counted=None) -> EventStats:
        """One step's events (`totals`: each env's episode totals including them) and KPIs; `done` ends episodes;
        `counted` (bool per env; None: all) leaves the other envs' step out. Inside jitted rollouts with JAX arrays;
        on the host (Python envs) with numpy arrays, in numpy."""
        xp = np if isinstance(done, np.ndarray) else jnp
        if counted is not None:
            done = done & counted
            events = {k: xp.where(counted, v, -xp.inf) for k, v in events.items()}  # -inf: no maximum; sums: 0
        ended = lambda old, new: {k: xp.where(done, new(k), old[k]) for k in old}  # noqa: E731
        summed = lambda v: v if counted is None else xp.where(counted, v, 0.0)  # noqa: E731
        return EventStats(
            {k: v + summed(events[k]) for k, v in self.step_sum.items()},
            {k: xp.maximum(v, events[k]) for k, v in self.step_max.items()},
            {k: v + xp.where(done, totals[k], 0.0) for k, v in self.episode_total.items()},
            self.steps + (1 if counted is None else counted), self.episodes + done,
            ended(self.kpi_sum, lambda k: self.kpi_sum[k] + kpis[k]),
            ended(self.kpi_sq, lambda k: self.kpi_sq[k] + kpis[k] ** 2),
            ended(self.kpi_min, lambda k: xp.minimum(self.kpi_min[k], kpis[k])),
            ended(self.kpi_max, lambda k: xp.maximum(self.kpi_max[k], kpis[k])))

    def with_names(self, events, kpis) -> EventStats:
        """These statistics (numpy, on the host) with the names in `events` and `kpis` they lack added, as none
        reported yet: a Python env may report a name first late in a run (a KPI on an episode's last step)."""
        fresh = EventStats.zeros(len(self.steps), tuple(k for k in events if k not in self.step_sum),
                                 tuple(k for k in kpis if k not in self.kpi_sum), np)
        return EventStats(*({**mine, **new} if isinstance(mine, dict) else mine for mine, new in zip(self, fresh)))

    def merge(self, other: EventStats) -> EventStats:
        """The statistics of both (per env): sums and counts added, extremes of both; a name that only one of them
        has counts as not reported in the other."""
        self, other = self.with_names(other.step_sum, other.kpi_sum), other.with_names(self.step_sum, self.kpi_sum)
        ops = (np.add, np.maximum, np.add, np.add, np.add, np.add, np.add, np.minimum, np.maximum)
        return EventStats(*(jax.tree.map(op, a, b) for op, a, b in zip(ops, self, other)))


def reported_names(env, env_params) -> tuple[tuple, tuple]:
    """The names of the events and KPIs the env reports in its step `info` (sorted; empty when it reports none)."""
    def one_step(key):
        _, state = env.reset(key, env_params)
        action = env.action_space(env_params).sample(key)
        return env.step(key, state, action, env_params)[-1]

    info = jax.eval_shape(one_step, jax.random.key(0))
    return tuple(sorted(info.get("events", {}))), tuple(sorted(info.get("kpis", {})))


class EpisodeStats(NamedTuple):
    """Finished episodes so far, per env (`length_hist` is shared: index = episode length). Returns are kept as a
    running mean and sum of squared deviations (Welford), so their spread stays exact for returns far from 0."""

    count: jax.Array
    return_mean: jax.Array
    return_m2: jax.Array
    return_min: jax.Array
    return_max: jax.Array
    length_sum: jax.Array
    first_return: jax.Array
    first_length: jax.Array
    length_hist: jax.Array
    bad_rewards: jax.Array  # steps whose reward was NaN or infinite
    bad_observations: jax.Array  # steps whose observation held a NaN or infinite value
    events: EventStats | None = None  # the env's events and KPIs, when it reports any (training rollouts)

    @classmethod
    def zeros(cls, n_envs: int, max_length: int, reported: tuple = ((), ())) -> EpisodeStats:
        """No episodes yet; `reported`: the names of the env's events and KPIs (`reported_names`) to count."""
        f, i = jnp.zeros(n_envs, jnp.float32), jnp.zeros(n_envs, jnp.int32)
        events = EventStats.zeros(n_envs, *reported) if any(reported) else None
        return cls(i, f, f, f + jnp.inf, f - jnp.inf, i, f, i, jnp.zeros(max_length + 1, jnp.int32), i, i, events)

    def check(self, reward: jax.Array, obs) -> EpisodeStats:
        """Counts the steps whose reward or observation is NaN or infinite (the loop stops on any)."""
        finite = lambda x: jnp.isfinite(x).reshape(x.shape[0], -1).all(-1)  # noqa: E731
        floats = [x for x in jax.tree.leaves(obs) if jnp.issubdtype(x.dtype, jnp.floating)]
        # integer and bool observations are always finite (a Python `True` here would invert to -2)
        obs_ok = jnp.all(jnp.stack([finite(x) for x in floats]), 0) if floats else jnp.ones(reward.shape, bool)
        return self._replace(bad_rewards=self.bad_rewards + ~jnp.isfinite(reward),
                             bad_observations=self.bad_observations + ~obs_ok)

    def add(self, done: jax.Array, ep_return: jax.Array, ep_length: jax.Array) -> EpisodeStats:
        """Counts the episodes that ended this step (`done`) with their returns and lengths."""
        first = done & (self.count == 0)
        count = self.count + done
        delta = ep_return - self.return_mean
        mean = jnp.where(done, self.return_mean + delta / jnp.maximum(count, 1), self.return_mean)
        return EpisodeStats(
            count,
            mean,
            jnp.where(done, self.return_m2 + delta * (ep_return - mean), self.return_m2),
            jnp.where(done, jnp.minimum(self.return_min, ep_return), self.return_min),
            jnp.where(done, jnp.maximum(self.return_max, ep_return), self.return_max),
            self.length_sum + jnp.where(done, ep_length, 0),
            jnp.where(first, ep_return, self.first_return),
            jnp.where(first, ep_length, self.first_length),
            self.length_hist.at[ep_length].add(done.astype(jnp.int32), mode="drop"),
            self.bad_rewards,
            self.bad_observations,
            self.events,
        )

    def first_episodes(self) -> EpisodeStats:
        """Only each env's first finished episode (evaluation counts one episode per env)."""
        ended = self.count > 0
        ret, length = jnp.where(ended, self.first_return, 0.0), jnp.where(ended, self.first_length, 0)
        hist = jnp.zeros_like(self.length_hist).at[length].add(ended.astype(jnp.int32), mode="drop")
        return EpisodeStats(ended.astype(jnp.int32), ret, jnp.zeros_like(ret), jnp.where(ended, ret, jnp.inf),
                            jnp.where(ended, ret, -jnp.inf), length, ret, length, hist, self.bad_rewards,
                            self.bad_observations)


def step_batch(env, env_params, keys: jax.Array, states, actions):
    """Steps a batch of environments, one key each (gymnax auto-resets each one whose episode ended). Rewards come
    out as float32 and the end flags as bools, whatever the env returns (bsuite's and gymnax's bandits give int32
    rewards), so that every learner and buffer sees one dtype."""
    obs, states, reward, terminated, truncated, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
        keys, states, actions, env_params)
    return obs, states, reward.astype(jnp.float32), terminated.astype(bool), truncated.astype(bool), info


def reset_memory(memory, done: jax.Array):
    """Each env's policy memory (leading env axes), zeros where its episode just ended (`done`: those axes)."""
    return jax.tree.map(lambda m: jnp.where(done.reshape(done.shape + (1,) * (m.ndim - done.ndim)), 0, m), memory)


class EnvBatch(NamedTuple):
    """A batch of envs mid-episode: observations, env states, each env's running return and length, its
    running episode totals of the events the env reports (by name), and the memory a recurrent policy keeps of
    it (`()` for a policy without one)."""

    obs: Any
    state: Any
    episode_return: jax.Array
    episode_length: jax.Array
    event_totals: dict = {}
    memory: Any = ()

    @classmethod
    def reset(cls, env, env_params, key: jax.Array, n_envs: int, mirrored: bool = False, memory=()) -> EnvBatch:
        """Fresh episodes of `n_envs` envs; `memory`: the policy's memory at their start (leading env axis)."""
        keys = env_keys(key, 1, n_envs, mirrored)[0]
        obs, states = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
        zeros = jnp.zeros(n_envs, jnp.float32)
        events, _ = reported_names(env, env_params)
        return cls(obs, states, zeros, zeros.astype(jnp.int32), {name: zeros for name in events}, memory)


class Step(NamedTuple):
    """One step of a batch of envs (time-major once a scan stacks them): the observation acted on, what `act`
    recorded, the reward, the end flags and the observation the step ended in (before any auto-reset)."""

    obs: Any
    record: Any
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: Any


def step_envs(env, env_params, act: Callable, envs: EnvBatch, stats: EpisodeStats, act_key, env_keys, mesh=None):
    """One step of every env under `act(obs_batch, key, memory) -> (env actions, record, memory)`, counting the
    episodes that end; an env's memory is set to zeros when its episode ends.

    The step function of every JAX-env rollout: `play_episodes` and the actor-critic collector scan it.
    Returns (envs, stats, Step)."""
    action, record, memory = act(envs.obs, act_key, envs.memory)
    next_obs, states, reward, terminated, truncated, info = step_batch(env, env_params, env_keys, envs.state, action)
    done = terminated | truncated
    ep_return, ep_length = envs.episode_return + reward, envs.episode_length + 1
    stats = stats.add(done, ep_return, ep_length).check(reward, next_obs)
    totals = {k: v + info["events"][k] for k, v in envs.event_totals.items()}
    if stats.events is not None:
        stats = stats._replace(events=stats.events.add(done, info.get("events", {}), totals, info.get("kpis", {})))
    step = Step(envs.obs, record, reward, terminated, truncated, info["final_observation"])
    envs = EnvBatch(next_obs, states, jnp.where(done, 0.0, ep_return), jnp.where(done, 0, ep_length),
                    {k: jnp.where(done, 0.0, v) for k, v in totals.items()}, reset_memory(memory, done))
    return shard_batch(envs, mesh), stats, step


def env_keys(key: jax.Array, n: int, n_envs: int, mirrored: bool = False) -> jax.Array:
    """(n, n_envs) keys, or keys of n_envs / 2 envs repeated (`mirrored`: env i and env i + n_envs / 2 share
    every key, so that they meet the same randomness)."""
    if not mirrored:
        return jax.random.split(key, n * n_envs).reshape((n, n_envs))
    half = jax.random.split(key, n * (n_envs // 2)).reshape((n, n_envs // 2))
    return jnp.concatenate([half, half], axis=1)


def run_steps(env, env_params, act: Callable, envs: EnvBatch, stats: EpisodeStats, key_act: jax.Array,
              key_env: jax.Array, n_steps: int, mesh=None, keep: Callable = lambda step: step, mirrored: bool = False):
    """`n_steps` steps of every env in one `lax.scan`: (envs, stats, keep(Step) stacked time-major). `key_act`
    draws the actions' randomness, `key_env` the envs' dynamics (`mirrored`: see `env_keys`)."""
    n_envs = envs.episode_return.shape[0]
    # all keys drawn up front in one vectorised call: cheaper than splitting inside the step loop
    keys = (jax.random.split(key_act, n_steps), env_keys(key_env, n_steps, n_envs, mirrored))

    def one_step(carry, keys):
        envs, stats = carry
        envs, stats, step = step_envs(env, env_params, act, envs, stats, *keys, mesh=mesh)
        return (envs, stats), keep(step)

    (envs, stats), steps = jax.lax.scan(one_step, (shard_batch(envs, mesh), stats), keys)
    return envs, stats, steps


class Recording(NamedTuple):
    """Every step of a recorded rollout, time-major: (steps, envs, ...) (what a rollout writes; the learner's batch
    is `algorithms.actor_critic.Trajectory`). Envs auto-reset, so a row may hold more than one episode;
    `EpisodeStats.first_length` says where each env's first one ends."""

    observation: Any
    action: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array


def play_episodes(env, env_params, act: Callable, key: jax.Array, n_envs: int, n_steps: int, record: bool = False,
                  mesh=None, mirrored: bool = False, count_events: bool = False, memory=None,
                  until_ended: bool = False):
    """Runs `n_envs` fresh envs for `n_steps` steps under `act(obs_batch, key) -> actions`, one `lax.scan` (with
    `until_ended`, not recording: until every env has ended an episode, see `run_until_ended`). With a
    `memory` (a policy's memory of the envs at their start, leading env axis), `act(obs_batch, key, memory) ->
    (actions, memory)`, and each env's memory is set to zeros when its episode ends.

    Returns the EpisodeStats, or (EpisodeStats, Recording) with `record` (the same episodes: same keys).
    With a `mesh`, the envs are split across its devices. `mirrored`: env i and env i + n_envs / 2 start from
    the same state and meet the same env randomness (ES's antithetic pairs). `count_events`: the stats also
    count the events and KPIs the env reports (`EventStats`)."""
    key_reset, key_act, key_env = jax.random.split(key, 3)
    envs = EnvBatch.reset(env, env_params, key_reset, n_envs, mirrored, () if memory is None else memory)
    keep = (lambda s: Recording(s.obs, s.record, s.reward, s.terminated, s.truncated)) if record else (lambda s: None)

    def act_and_record(obs, k, envs_memory):  # the record is the env action
        action, envs_memory = (act(obs, k), ()) if memory is None else act(obs, k, envs_memory)
        return action, action, envs_memory

    stats = EpisodeStats.zeros(n_envs, n_steps, reported_names(env, env_params) if count_events else ((), ()))
    if until_ended and not record:  # the first episodes are all that count: stop when every env has ended one
        return run_until_ended(env, env_params, act_and_record, envs, stats, key_act, key_env, n_steps, mesh,
                               mirrored)[0]
    _, stats, trajectory = run_steps(env, env_params, act_and_record, envs, stats, key_act, key_env, n_steps, mesh,
                                     keep, mirrored)
    return (stats, trajectory) if record else stats


def run_until_ended(env, env_params, act: Callable, envs: EnvBatch, stats: EpisodeStats, key_act: jax.Array,
                    key_env: jax.Array, n_steps: int, mesh=None, mirrored: bool = False):
    """`run_steps`, with the same keys step by step, in a `lax.while_loop` that ends once every env has finished an
    episode (at most `n_steps` steps): an evaluation of short episodes on an env with a long time limit (Craftax:
    100,000 steps) ends with its episodes. Each env's first episode is the scan's; later ones are cut short.
    Returns the statistics and the steps taken."""
    n_envs = envs.episode_return.shape[0]
    keys = (jax.random.split(key_act, n_steps), env_keys(key_env, n_steps, n_envs, mirrored))

    def running(carry):
        t, _, stats = carry
        return (t < n_steps) & jnp.any(stats.count == 0)

    def one_step(carry):
        t, envs, stats = carry
        envs, stats, _ = step_envs(env, env_params, act, envs, stats, *(k[t] for k in keys), mesh=mesh)
        return t + 1, envs, stats

    steps, _, stats = jax.lax.while_loop(running, one_step, (jnp.int32(0), shard_batch(envs, mesh), stats))
    return stats, steps
