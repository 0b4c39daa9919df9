"""The agent's and the envs' randomness come from separate streams: equal seed numbers stay independent."""

import jax
import numpy as np
import pytest

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


@pytest.mark.slow
def test_python_envs_sample_actions_from_the_agents_stream():
    """On a Python env that ignores its seed, a new env seed changes nothing the agent draws: the actions (and so
    the learner) stay bit-equal; a new agent seed changes them. Rollouts (PPO, with its actor thread) and fresh
    episodes (ES)."""
    import python_envs  # noqa: F401  (registers the Countdown env)
    from conftest import make_trainer

    env = ["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "+env.kwargs.length=4", "runner=dev",
           "model.hidden_units=[8]"]
    for learner in (["algorithm=ppo", "runner.concurrency=2", "algorithm.n_rollout_steps=8", "algorithm.batch_size=8",
                     "algorithm.epoch_length=2"],
                    ["algorithm=es", "algorithm.n_rollouts_per_update=8", "algorithm.deterministic=false"]):
        _, trainer = make_trainer([*env, *learner])
        try:
            def trained(agent_seed: int, env_seed: int):
                state = trainer.init(jax.random.key(agent_seed), jax.random.key(100 + env_seed))
                return np.asarray(jax.flatten_util.ravel_pytree(trainer.train_epoch(state)[0].learner.params)[0])

            first = trained(0, 0)
            np.testing.assert_array_equal(first, trained(0, 1), err_msg=learner[0])
            assert not np.array_equal(first, trained(1, 0)), learner[0]
        finally:
            trainer.close()
