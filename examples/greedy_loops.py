"""Act greedily with a trained policy in loops of your own: `train.to_policy(state).compute_action(obs)` takes the
env's own observation and returns what its `step` takes (a Discrete choice as a Python int).

    python examples/greedy_loops.py
"""

import maze_jax  # noqa: F401  (first: it sets XLA's CPU flags before JAX starts)

import dataclasses

import gymnasium
import gymnax
import jax

from maze_jax.algorithms.actor_critic import ActorCriticConfig
from maze_jax.envs import make_env
from maze_jax.research import make_train

config = ActorCriticConfig(n_epochs=8, epoch_length=10, n_envs=16, n_rollout_steps=64, batch_size=256, lr=1e-3)

# 1. A gymnax env: train in one jitted program, then step the env yourself.
train = make_train(config, env="CartPole-v1")
state, metrics = jax.jit(train)(jax.random.key(0))
policy = train.to_policy(state)
env, params = gymnax.make("CartPole-v1")
step = jax.jit(env.step)  # it resets by itself at an episode's end
obs, env_state = env.reset(jax.random.key(1), params)
episode_return, done, t = 0.0, False, 0
while not done:
    action = policy.compute_action(obs)  # the policy's mode: greedy
    obs, env_state, reward, terminated, truncated, _ = step(jax.random.key(t), env_state, action, params)
    episode_return, done, t = episode_return + float(reward), bool(terminated | truncated), t + 1
print(f"gymnax CartPole-v1 after {int(metrics['total_env_steps'][-1]):,} steps: greedy return {episode_return:.0f}")

# 2. A gymnasium env (yours, or any registered id): training steps it on the host; acting is the same call.
train = make_train(dataclasses.replace(config, n_epochs=3), env=make_env("CartPole-v1", backend="gymnasium"))
state, metrics = train(jax.random.key(0))  # Python envs: call it directly, not under jax.jit
policy = train.to_policy(state)
env = gymnasium.make("CartPole-v1")
obs, _ = env.reset(seed=1)
episode_return, done = 0.0, False
while not done:
    obs, reward, terminated, truncated, _ = env.step(policy.compute_action(obs))
    episode_return, done = episode_return + reward, terminated or truncated
env.close()
print(f"gymnasium CartPole-v1 after {int(metrics['total_env_steps'][-1]):,} steps: greedy return {episode_return:.0f}")
