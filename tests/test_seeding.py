"""The agent's and the envs' randomness come from separate streams: equal seed numbers stay independent."""

import jax
import numpy as np

from maze_jax.shell.session import agent_key, env_key, eval_key, final_evaluation_key, normalization_key
from maze_jax.shell.settings import LoopSettings, RunSettings


def test_equal_agent_and_env_seeds_give_independent_keys():
    settings = RunSettings(algorithm=None, loop=LoopSettings(), agent_seed=5, env_seed=5)
    data = lambda k: tuple(np.asarray(jax.random.key_data(k)).tolist())  # noqa: E731
    agent = data(agent_key(settings))
    env_side = {data(env_key(settings)), data(final_evaluation_key(5)), data(normalization_key(5))}
    env_side |= {data(jax.random.fold_in(eval_key(settings), epoch)) for epoch in range(50)}  # each epoch's evaluation
    assert agent not in env_side
    # and the streams are really apart: the agent's key does not move with the env seed, nor the envs' with the agent's
    other = RunSettings(algorithm=None, loop=LoopSettings(), agent_seed=5, env_seed=6)
    assert data(agent_key(other)) == agent and data(env_key(other)) != data(env_key(settings))
    assert data(env_key(RunSettings(algorithm=None, loop=LoopSettings(), agent_seed=9, env_seed=5))) == \
        data(env_key(settings))
