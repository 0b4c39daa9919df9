"""Every config key is checked before anything compiles: a bad value is one ConfigError naming the key."""

from __future__ import annotations

import pytest

from maze_jax.config import ConfigError
from maze_jax.shell.session import build
from maze_jax.shell.settings import compose_config, read_settings
from maze_jax.shell.settings import draw_seeds

BAD = [
    ("env.reward_threshold=abc", "env.reward_threshold='abc': expected a number"),
    ("env.max_episode_steps=abc", "env.max_episode_steps='abc': expected an integer"),
    ("env.max_episode_steps=0", "env.max_episode_steps=0: must be >= 1"),
    ("env=gymnasium env.kwargs=5", "env.kwargs=5: expected a mapping"),
    ("env=gym_env env.backend=magic", "env.backend='magic' is unknown"),
    ("model.hidden_units=[8,-1]", "model.hidden_units=[8, -1]"),
    ("model.non_lin=Swish2", "model.non_lin='Swish2' is unknown"),
    ("algorithm=ppo critic=separate critic.hidden_units=[0]", "critic.hidden_units=[0]"),
    ("runner.checkpoint_every_s=-1", "runner.checkpoint_every_s=-1.0: must be >= 0.0"),
    ("runner.final_eval_rollouts=0", "runner.final_eval_rollouts=0: must be >= 1"),
    ("runner.vectorization=fork", "runner.vectorization='fork' is unknown"),
    ("runner.table=wide", "runner.table='wide' is unknown. Valid: full, compact"),
    ("runner.policy_lag=2", "runner.policy_lag=2: must be <= 1"),
    ("runner.env_step_timeout_s=0", "runner.env_step_timeout_s=0.0: must be > 0.0"),
    ("runner.n_seeds=abc", "runner.n_seeds='abc': expected an integer"),
    ("algorithm.optimizer.name=rmsprop", "algorithm.optimizer.name='rmsprop' is unknown"),
    ("algorithm.deterministic=perhaps", "algorithm.deterministic='perhaps': expected true or false"),
    ("algorithm.max_steps=-1", "algorithm.max_steps=-1: must be >= 0"),
    ("algorithm=impala algorithm.num_actors=0", "algorithm.num_actors=0: must be >= 1"),
    ("algorithm=impala algorithm.num_actors=1.5", "algorithm.num_actors=1.5: expected an integer"),
    ("seeding.agent_base_seed=abc", "seeding.agent_base_seed='abc': expected an integer"),
    ("seeding.agent_base_seed=99999999999999999999", "seeding.agent_base_seed=99999999999999999999: must be <= "
                                                     "4294967295"),
    ("algorithm=ppo algorithm.clip_range=-1", "algorithm.clip_range=-1.0: must be >= 0.0"),
    ("algorithm=ppo algorithm.rollout_evaluator.n_episodes=-1", "algorithm.rollout_evaluator.n_episodes=-1"),
    ("runner.n_devices=99", "runner.n_devices=99: this process sees "),
    ("runner=sequential", "runner: a rollout runner (runner=sequential or parallel: python -m maze_jax.rollout) "
                          "cannot train; training takes runner=local, dev, distributed or ray"),
    ("wrappers=vector_obs wrappers.observation_normalization.default_strategy_config.clip_range=[1]",
     "clip_range=[1]: expected [low, high]"),
]


@pytest.mark.parametrize("overrides, message", BAD, ids=[o for o, _ in BAD])
def test_every_bad_value_is_refused_before_compiling_naming_its_key(overrides, message):
    with pytest.raises(ConfigError) as refused:
        cfg, _ = compose_config(overrides.split())
        draw_seeds(cfg)
        build(read_settings(cfg), echo=lambda *a, **k: None)  # what a run does before it compiles
    assert message in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize("value, seconds", [("null", None), ("2.5", 2.5)])
def test_the_env_step_timeout_is_read_or_off(value, seconds):
    cfg, _ = compose_config([f"runner.env_step_timeout_s={value}"])
    draw_seeds(cfg)
    assert read_settings(cfg).host.vectorization.timeout_s == seconds
