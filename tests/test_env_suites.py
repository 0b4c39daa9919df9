"""The env suites as extras (JAX: env=brax, env=craftax, env=jumanji, env=xminigrid; Python: env=popgym): each
adapter steps, caps and auto-resets episodes, keeps the suite's masks, and trains a PPO epoch; a missing extra is one
line."""

from __future__ import annotations

import importlib.util

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_state, make_trainer, run_cli
from maze_jax.config import ConfigError

pytestmark = pytest.mark.extra

SMALL_PPO = ["algorithm=ppo", "runner.concurrency=4", "algorithm.n_rollout_steps=8", "algorithm.batch_size=16",
             "algorithm.epoch_length=1", "model.hidden_units=[16]"]


def needs(module: str):
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f'{module} is not installed: pip install "maze-jax[{module}]"')


def play(spec, n_steps: int, choose=None):
    """`n_steps` steps of one env (random actions, or `choose(obs, step)`): rewards, terminated and truncated flags."""
    env, params = spec.env, spec.params

    def one_step(carry, key_step):
        (obs, state), (key, step) = carry, key_step
        action = env.action_space(params).sample(key) if choose is None else choose(obs, step)
        obs, state, reward, terminated, truncated, _ = env.step(key, state, action, params)
        return (obs, state), (reward, terminated, truncated)

    start = env.reset(jax.random.key(0), params)
    steps = (jax.random.split(jax.random.key(1), n_steps), jnp.arange(n_steps))
    _, out = jax.jit(lambda c: jax.lax.scan(one_step, c, steps))(start)
    return [np.asarray(x) for x in out]


def smoke_epoch(overrides: list[str]):
    """One PPO epoch through the config a run composes, episodes capped at 4 steps so that some end: the expected
    numbers of steps and episodes, and finite metrics."""
    _, trainer = make_trainer(overrides + SMALL_PPO + ["env.max_episode_steps=4"])
    _, metrics = jax.jit(trainer.train_epoch)(init_state(trainer))
    assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 4 * 8
    assert int(metrics["train_BaseEnvEvents/reward/episode_count"]) >= 4 * 2
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in jax.tree.leaves(metrics))


@pytest.mark.parametrize("group, module", [("brax", "brax"), ("craftax", "craftax"), ("jumanji", "jumanji"),
                                           ("xminigrid", "xminigrid"), ("popgym", "popgym")])
def test_a_missing_extra_says_what_to_install(group, module, monkeypatch):
    from maze_jax.envs.make import build_env
    from maze_jax.shell.settings import compose_config

    cfg, _ = compose_config([f"env={group}"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    with pytest.raises(ConfigError, match=rf'env={group} needs the {module} extra: pip install "maze-jax\[{module}\]"'):
        build_env(cfg.env)


@needs("xminigrid")
def test_xminigrid_caps_and_restarts_episodes():
    from maze_jax.envs.suites.xminigrid_envs import make_xminigrid

    spec = make_xminigrid("MiniGrid-Empty-5x5", max_episode_steps=7)
    assert spec.horizon == 7
    turn_left = lambda obs, step: jnp.int32(1)  # noqa: E731 (never arrives)
    reward, terminated, truncated = play(spec, 21, choose=turn_left)
    assert truncated.nonzero()[0].tolist() == [6, 13, 20] and not terminated.any() and not reward.any()
    with pytest.raises(ConfigError, match="Close matches: MiniGrid-Empty-5x5"):
        make_xminigrid("MiniGrid-Empty-5x4")


@needs("xminigrid")
def test_cli_trains_on_xminigrid(tmp_path, cache_dir):
    result = run_cli(["env=xminigrid", "env.name=MiniGrid-Empty-5x5", "env.max_episode_steps=20", *SMALL_PPO,
                      "algorithm.n_epochs=1", "runner.n_eval_rollouts=2",
                      "runner.final_eval_rollouts=2"], tmp_path, cache_dir)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "MiniGrid-Empty-5x5" in result.stdout


@needs("jumanji")
def test_jumanji_masks_are_maze_masks():
    from maze_jax.envs.suites.jumanji_envs import make_jumanji

    knapsack = make_jumanji("Knapsack-v1")
    assert knapsack.env.action_masks == {"action": "action_mask"}
    assert knapsack.env.action_space(knapsack.params).n == 50
    # BinPack chooses (space, item): one choice over all pairs whose mask is the env's own, flattened
    binpack = make_jumanji("BinPack-v2")
    assert binpack.env.action_space(binpack.params).n == 40 * 20
    # three allowed pairs (items placed, the episode goes on), then one the mask forbids: BinPack ends the episode
    choose = lambda obs, step: jnp.where(step < 3, jnp.argmax(obs["action_mask"]),  # noqa: E731
                                         jnp.argmin(obs["action_mask"])).astype(jnp.int32)
    reward, terminated, _ = play(binpack, 4, choose=choose)
    assert not terminated[:3].any() and reward[:3].sum() > 0 and terminated[3]


@needs("jumanji")
def test_ppo_epoch_on_jumanji_with_masks():
    smoke_epoch(["env=jumanji", "env.name=Knapsack-v1"])


@needs("brax")
def test_ppo_epoch_on_brax_continuous():
    from maze_jax.envs.suites.brax_envs import make_brax

    spec = make_brax("fast", max_episode_steps=5)  # Brax's test env: it never ends on its own
    assert spec.env.action_space(spec.params).shape == (1,)
    _, terminated, truncated = play(spec, 10)
    assert truncated.nonzero()[0].tolist() == [4, 9] and not terminated.any()
    smoke_epoch(["env=brax", "env.name=inverted_pendulum"])


@needs("craftax")
def test_ppo_epoch_on_craftax_classic():
    smoke_epoch(["env=craftax", "env.name=Craftax-Classic-Symbolic-v1"])


@needs("popgym")
def test_popgym_memory_tasks_train_as_python_envs_with_the_recurrent_model():
    from maze_jax.envs.suites.popgym_envs import make_popgym

    with pytest.raises(ConfigError, match="not a popgym env. Close matches: RepeatPreviousEasy"):
        make_popgym("RepeatPrevEasy")
    spec, trainer = make_trainer(["env=popgym", "env.name=RepeatFirstEasy", "model=vector_obs_rnn", "runner=dev",
                                  *SMALL_PPO])
    assert spec.is_python and spec.name == "popgym-RepeatFirstEasy-v0"
    try:
        _, metrics = trainer.train_epoch(init_state(trainer))
    finally:
        trainer.close()
    assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 4 * 8
    assert np.isfinite(float(metrics["policy_loss"]))
