"""gymnax environments by gym and gymnax ids, discrete and continuous actions, train with ES."""

import jax
import numpy as np
import pytest

from conftest import init_state, make_trainer
from maze_jax.config import ConfigError
from maze_jax.envs import build_env, make_gymnax

def test_cartpole_v0_is_v1_with_200_steps_and_its_own_threshold():
    spec = make_gymnax("CartPole-v0")
    assert spec.horizon == 200 and spec.reward_threshold == 195.0
    assert make_gymnax("CartPole-v1").horizon == 500


def test_unknown_env_lists_valid_names():
    with pytest.raises(ConfigError, match="Valid names: .*Breakout-MinAtar"):
        make_gymnax("Breakout-v5")


def test_env_config_target_factory():
    spec = build_env({"_target_": "maze_jax.envs.make_gymnax", "name": "Acrobot-v1", "max_episode_steps": 50,
                      "reward_threshold": None})
    assert spec.horizon == 50 and spec.reward_threshold is None
    with pytest.raises(ConfigError, match="cannot be imported"):
        build_env({"_target_": "nowhere.make"})


@pytest.mark.parametrize("name", ["Pendulum-v1", "Breakout-MinAtar", "Catch-bsuite"])
def test_es_epoch_runs_on_discrete_continuous_and_image_observations(name):
    spec = make_gymnax(name)
    _, trainer = make_trainer(["algorithm.n_rollouts_per_update=4", "algorithm.max_steps=30",
                               "model.hidden_units=[8]", "runner.n_eval_rollouts=2"], spec)
    state = init_state(trainer)
    new_state, metrics = jax.jit(trainer.train_epoch)(state)
    changed = jax.tree.map(lambda a, b: not np.allclose(a, b), new_state.learner.params, state.learner.params)
    assert all(jax.tree.leaves(changed))
    assert int(metrics["train_BaseEnvEvents/reward/episode_count"]) >= 4  # every member ends >= 1 episode in 30 steps
    evaluation = trainer.evaluate(new_state, jax.random.key(1))
    np.testing.assert_array_equal(evaluation.count, [1, 1])


def test_a_factory_that_returns_no_env_is_refused_in_one_line():
    with pytest.raises(ConfigError, match=r"env._target_='builtins.dict' returned dict, not an env"):
        build_env({"_target_": "builtins.dict", "name": "x"})


def test_an_own_jax_envs_threshold_from_a_config_is_read_like_any_other():
    """A config's `reward_threshold: auto` reaches a JAX env of one's own as None (it has no known threshold), a number
    as a number, and anything else is refused: `auto` used to stay a string, and a run crashed at its first check."""
    from conftest import Countdown
    from maze_jax.config import ConfigError
    from maze_jax.envs.make import as_env_spec

    env = Countdown(3)
    assert as_env_spec((env, env.default_params), reward_threshold="auto").reward_threshold is None
    assert as_env_spec(env, reward_threshold=12.5).reward_threshold == 12.5
    with pytest.raises(ConfigError, match="reward_threshold"):
        as_env_spec(env, reward_threshold="high")
