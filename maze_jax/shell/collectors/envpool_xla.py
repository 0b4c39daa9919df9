"""Rollouts of envpool's envs as one jitted program: envpool's XLA interface (`env.xla()`) steps the whole batch from
inside a `lax.scan` that runs the policy too, so a rollout of `n_steps` steps is one call with no Python per step.
Stepped from Python instead (`VectorEnv`), each step pays a policy call and the conversions around it, which cost as
much as a LunarLander step of 16 envs.

envpool resets an ended env on its next step: that step ignores its action, gives reward 0 and the new episode's
first observation. It is no transition, and the Trajectory marks it (`valid` False) for the learner to leave out
(`Algorithm.masks_steps`). An episode's last observation is then the next step's observation, its `final_obs`, and
the cut at the end of an episode keeps the reset step out of the earlier steps' advantages.

Used where it fits (`fits`): learners that honour `Trajectory.valid` (PPO, A2C), feed-forward models, a Box
observation and a Discrete or Box action; otherwise envpool steps from Python, with same-step resets.
"""

from __future__ import annotations

import sys
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.algorithms import Algorithm
from maze_jax.algorithms.actor_critic import Trajectory
from maze_jax.collectors import EnvFailed
from maze_jax.envs import EnvSpec
from maze_jax.shell.collectors.vector_env import envpool_kwargs


def fits(algorithm: Algorithm, env_spec: EnvSpec) -> bool:
    """Whether `algorithm` on `env_spec` trains from envpool's jitted rollouts."""
    import gymnasium

    env = env_spec.env
    if getattr(env, "envpool_id", None) is None or sys.platform != "linux":  # envpool's XLA is Linux's alone
        return False
    if not algorithm.masks_steps or algorithm.fresh_episodes or jax.tree.leaves(algorithm.initial_memory(1)):
        return False
    obs, action = env.gym_observation_space, env.gym_action_space
    return (isinstance(obs, gymnasium.spaces.Box) and obs.dtype != bool and not env.action_masks
            and isinstance(action, (gymnasium.spaces.Discrete, gymnasium.spaces.Box)))


def env_action_converter(space) -> Callable:
    """maze_jax actions (n, ...) as envpool takes them for `space` (gymnasium's Discrete or Box), traced: a
    Discrete's offset added, a Box's actions clipped to its bounds (as `python_env.to_env_action`)."""
    import gymnasium

    if isinstance(space, gymnasium.spaces.Discrete):
        return lambda action: action.astype(jnp.int32) + int(space.start)
    low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
    return lambda action: jnp.clip(action.reshape((-1,) + space.shape).astype(jnp.float32), low, high)


def rollout_program(explore: Callable, env_step: Callable, to_env_action: Callable, normalize: Callable,
                    n_seeds: int, n_envs: int, n_steps: int) -> Callable:
    """The rollout as a pure function of (acting, keys, carry) -> (carry, Trajectory, per-step episode ends), jitted
    by the caller.

    `explore(acting, obs, key, memory)` is the algorithm's (vmapped here over the leading seed axis of `acting` and
    `keys`); `env_step(handle, env_actions) -> (handle, (obs, reward, terminated, truncated, env_ids))` steps all
    `n_seeds * n_envs` envs, resetting an env whose episode ended on the step before (envpool's way); its outputs
    may come in any env order (`env_ids`). `carry` = (handle, obs (n, ...), whether each env's episode ended on
    the last step (n,), running returns (n,), running lengths (n,)).

    Returns the Trajectory (S, T, N, ...) with `valid`, and (T, n) arrays: whether an episode ended at the step,
    its return and length there, and whether the step's rewards and observations were all finite."""
    n = n_seeds * n_envs

    def by_seed(x):  # (n, ...) -> (S, N, ...)
        return x.reshape((n_seeds, n_envs) + x.shape[1:])

    def rollout(acting, keys, carry):
        def step(carry, _):
            handle, obs, ended_before, returns, lengths, keys = carry
            keys, step_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
            explore_one = lambda p, o, k: explore(p, normalize(o), k, ())  # noqa: E731
            action, experience, _ = jax.vmap(explore_one)(acting, by_seed(obs), step_keys)
            flat = lambda x: x.reshape((n,) + x.shape[2:])  # noqa: E731
            handle, (raw, reward, terminated, truncated, env_ids) = env_step(handle, to_env_action(flat(action)))
            in_order = lambda x: jnp.zeros_like(x).at[env_ids].set(x)  # noqa: E731
            next_obs = in_order(raw.astype(jnp.float32))
            reward, terminated, truncated = (in_order(x) for x in (reward.astype(jnp.float32), terminated, truncated))
            valid = ~ended_before  # the step after an end only resets its env
            ended = (terminated | truncated) & valid
            returns = jnp.where(valid, returns + reward, 0.0)
            lengths = jnp.where(valid, lengths + 1, 0)
            finite = jnp.isfinite(reward).all() & jnp.isfinite(next_obs).all()
            out = (obs, experience, reward, terminated & valid, truncated & valid, next_obs, valid,
                   (ended, returns, lengths, finite))
            return (handle, next_obs, ended, returns, lengths, keys), out

        carry, (obs, experience, reward, terminated, truncated, final, valid, ends) = jax.lax.scan(
            step, (*carry, keys), None, length=n_steps)
        time_major = lambda x: jnp.swapaxes(x.reshape((n_steps, n_seeds, n_envs) + x.shape[2:]), 0, 1)  # noqa: E731
        seeded = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731  (T, S, N, ...) -> (S, T, N, ...)
        trajectory = Trajectory(obs=time_major(obs), **jax.tree.map(seeded, experience)._asdict(),
                                reward=time_major(reward), terminated=time_major(terminated),
                                truncated=time_major(truncated), final_obs=time_major(final),
                                last_obs=by_seed(carry[1]), valid=time_major(valid))
        return carry[:5], trajectory, ends

    return rollout


class EnvpoolRollouts:
    """Rollouts of `n_steps` steps from `n_seeds * n_envs` envpool envs (seeded `seed`, as `VectorEnv` seeds
    them), each one jitted program (`rollout_program`) that applies the env's observation normalisation
    `normalize`: the collector protocol of `host.RolloutCollector`, whose Trajectories (S, T, N, ...) carry
    `valid`."""

    def __init__(self, algorithm: Algorithm, env_spec: EnvSpec, n_envs: int, n_steps: int, n_seeds: int, seed: int,
                 normalize: Callable = lambda obs: obs):
        import envpool

        env, n = env_spec.env, n_seeds * n_envs
        self.name, self.n_steps, self.n = env.name, n_steps, n
        self.pool = envpool.make_gymnasium(env.envpool_id, num_envs=n, seed=int(seed), **envpool_kwargs(env))
        obs, info = self.pool.reset()
        order = np.argsort(info["env_id"])
        handle, _, _, step = self.pool.xla()
        env_ids = jnp.arange(n, dtype=jnp.int32)

        def env_step(handle, action):
            handle, (obs, reward, terminated, truncated, info) = step(handle, action, env_ids)
            return handle, (obs, reward, terminated, truncated, info["env_id"])

        self.carry = (handle, jnp.asarray(np.asarray(obs)[order], jnp.float32), jnp.zeros(n, bool), jnp.zeros(n),
                      jnp.zeros(n, jnp.int32))
        self.rollout = jax.jit(rollout_program(algorithm.explore, env_step,
                                               env_action_converter(env.gym_action_space), normalize,
                                               n_seeds, n_envs, n_steps))
        self.env_steps = 0  # env steps taken, reset steps included: progress on a long epoch
        self.rollouts = 0

    def collect(self, params, act_keys, env_key=None, should_stop: Callable = lambda: False):
        """One rollout acting with `params` (leading seed axis) and `act_keys` (one per seed). Returns the
        Trajectory (S, T, N, ...), the episodes that ended ((env, return, length) in step order), None (envpool
        reports no events) and the steps taken; None when `should_stop()` is true before it starts."""
        if should_stop():
            return None
        self.carry, trajectory, ends = self.rollout(params, act_keys, self.carry)
        ended, returns, lengths, finite = jax.device_get(ends)
        self.rollouts += 1
        if not finite.all():
            raise EnvFailed(f"env {self.name} returned non-finite rewards or observations in step "
                            f"{int(np.argmin(finite))} of rollout {self.rollouts}", "non-finite")
        self.env_steps += self.n_steps * self.n
        steps, envs = np.nonzero(ended)
        episodes = [(int(i), float(returns[t, i]), int(lengths[t, i])) for t, i in zip(steps, envs)]
        return trajectory, episodes, None, self.n_steps * self.n

    def interrupt(self) -> None:
        """Nothing to cut short: a rollout is one call of a few milliseconds."""

    def close(self) -> None:
        self.pool.close()
