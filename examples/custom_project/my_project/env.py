"""A small custom environment in gymnax's interface: each step a target among `n_choices` is shown (one-hot)
together with the fraction of the episode left; choosing the target pays 1, anything else 0."""

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class State(environment.EnvState):
    target: jax.Array


@struct.dataclass
class Params(environment.EnvParams):
    max_steps_in_episode: int = 20


class MatchTarget(environment.Environment):
    def __init__(self, n_choices: int = 5):
        super().__init__()
        self.n_choices = n_choices

    @property
    def default_params(self) -> Params:
        return Params()

    def reset_env(self, key, params):
        state = State(time=0, target=jax.random.randint(key, (), 0, self.n_choices))
        return self.get_obs(state, params), state

    def step_env(self, key, state, action, params):
        reward = (action == state.target).astype(jnp.float32)
        state = State(time=state.time + 1, target=jax.random.randint(key, (), 0, self.n_choices))
        return self.get_obs(state, params), state, reward, jnp.bool_(False), {}

    def get_obs(self, state, params=None, key=None):
        left = 1.0 - state.time / (params or self.default_params).max_steps_in_episode
        return {"target": jax.nn.one_hot(state.target, self.n_choices), "time_left": jnp.array([left], jnp.float32)}

    def action_space(self, params=None):
        return spaces.Discrete(self.n_choices)

    def observation_space(self, params=None):
        return spaces.Dict({"target": spaces.Box(0.0, 1.0, (self.n_choices,)),
                            "time_left": spaces.Box(0.0, 1.0, (1,))})


def make_env(n_choices: int = 5, episode_length: int = 20, **_):
    """The env factory the config's `_target_` names: returns (env, params). `name` and `reward_threshold` of the
    config come along as keyword arguments; maze_jax reads them itself."""
    return MatchTarget(n_choices), Params(max_steps_in_episode=episode_length)
