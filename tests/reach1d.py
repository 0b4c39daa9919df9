"""A small gymnax-style env of one's own, as a researcher writes it: move a point left or right on [-1, 1] until
it is within 0.1 of a random goal. Run as a script, it trains under `jax.jit(jax.vmap(train))` over 2 seeds and
prints the last epoch's training mean (`tests/test_research.py` runs it with a timeout).

It imports gymnax before maze_jax, as the researcher's script did: gymnax starts JAX's backend at import, so none of
maze_jax's XLA flags apply and XLA runs with its own defaults."""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class EnvState(environment.EnvState):
    x: jax.Array
    goal: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 50


class Reach1D(environment.Environment):
    @property
    def default_params(self):
        return EnvParams()

    def step_env(self, key, state, action, params):
        x = jnp.clip(state.x + jnp.where(action == 1, 0.1, -0.1), -1.0, 1.0)
        reward = jnp.where(jnp.abs(x - state.goal) < 0.1, 1.0, -0.01)
        state = EnvState(x=x, goal=state.goal, time=state.time + 1)
        done = self.is_terminal(state, params)
        return jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), reward, done, {}

    def reset_env(self, key, params):
        k1, k2 = jax.random.split(key)
        state = EnvState(x=jax.random.uniform(k1, (), minval=-1, maxval=1),
                         goal=jax.random.uniform(k2, (), minval=-1, maxval=1), time=0)
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.stack([state.x, state.goal])

    def is_terminal(self, state, params):
        return jnp.logical_or(jnp.abs(state.x - state.goal) < 0.1, state.time >= params.max_steps_in_episode)

    @property
    def name(self):
        return "Reach1D-v0"

    @property
    def num_actions(self):
        return 2

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(-1.0, 1.0, (2,), jnp.float32)


if __name__ == "__main__":
    from maze_jax.algorithms.actor_critic import ActorCriticConfig
    from maze_jax.research import make_train

    config = ActorCriticConfig(n_epochs=4, epoch_length=10, n_envs=8, batch_size=100, n_rollout_steps=50)
    train = make_train(config, env=Reach1D(), eval_episodes=0, compilation_cache=None)
    _, metrics = jax.jit(jax.vmap(train))(jax.random.split(jax.random.key(1), 2))
    print("last train mean", metrics["train_BaseEnvEvents/reward/mean"][..., -1])
