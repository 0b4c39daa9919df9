"""The Python API: RunContext over the CLI's building blocks, make_train for research code, load_policy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import Countdown
from maze_jax.api import RunContext, compose_config, make_train
from maze_jax.config import ConfigError
from maze_jax.envs import EpisodeStats, as_env_spec, make_env, make_gymnax
from maze_jax.models import FlattenConcatPolicy, build_policy
from maze_jax.models.policy import instantiate_network
from maze_jax.shell.loop import play_in_batches, unfinished_note
from maze_jax.algorithms.metrics import episode_table
from maze_jax.trained_policy import check_fits, load_policy

QUIET = lambda *a, **k: None  # noqa: E731
TINY = {
    "es": {"algorithm.n_rollouts_per_update": 8, "model.hidden_units": [16]},
    "ppo": {"algorithm.epoch_length": 2, "runner.concurrency": 4, "algorithm.n_rollout_steps": 32,
            "algorithm.batch_size": 32, "model.hidden_units": [16]},
    "a2c": {"algorithm.epoch_length": 2, "runner.concurrency": 4, "algorithm.n_rollout_steps": 32,
            "model.hidden_units": [16]},
}


def tiny_context(algorithm, tmp_path, cache_dir, **kwargs) -> RunContext:
    overrides = {**TINY[algorithm], "compilation_cache_dir": cache_dir, "seeding.env_base_seed": 4,
                 "seeding.agent_base_seed": 5, "runner.stop_when_solved": False, **kwargs.pop("overrides", {})}
    return RunContext(env=kwargs.pop("env", "cartpole"), algorithm=algorithm, runner="dev", overrides=overrides,
                      run_dir=str(tmp_path / algorithm), echo=QUIET, **kwargs)


# PPO in the fast tier, ES and A2C in the full one
@pytest.mark.slow
@pytest.mark.parametrize("algorithm", [pytest.param("es", marks=pytest.mark.cli), "ppo",
                                       pytest.param("a2c", marks=pytest.mark.cli)])
def test_run_context_trains_continues_evaluates_and_acts(algorithm, tmp_path, cache_dir):
    rc = tiny_context(algorithm, tmp_path, cache_dir, overrides={"model.hidden_units": [8, 8]})
    assert list(rc.config.model.hidden_units) == [8, 8]  # overrides apply
    final = rc.train(n_epochs=1)
    assert final["final_BaseEnvEvents/reward/episode_count"] == 10  # runner=dev: 10 final episodes
    rc.train(n_epochs=1)
    assert rc.result.progress.epoch == 2  # the second call continued the first
    saved = OmegaConf.load(tmp_path / algorithm / "hydra_config.yaml")
    assert list(saved.model.hidden_units) == [8, 8]
    stats = rc.evaluate(n_episodes=6)
    assert stats["eval_BaseEnvEvents/reward/episode_count"] == 6
    assert 8 <= stats["eval_BaseEnvEvents/reward/mean"] <= 500
    assert rc.compute_action(np.zeros(4)) in (0, 1)
    assert rc.compute_action(np.zeros((5, 4))).shape == (5,)
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        rc.compute_action(np.zeros(3))
    # the best checkpoint on disk holds the policy RunContext uses
    loaded = load_policy(rc.run_dir)
    obs = jax.random.normal(jax.random.key(0), (64, 4))
    np.testing.assert_array_equal(loaded.compute_action(obs), rc.compute_action(obs))


@pytest.mark.cli
def test_run_context_takes_built_env_and_model_objects(tmp_path, cache_dir):
    model = FlattenConcatPolicy(n_outputs=0, hidden_units=(8,))
    rc = tiny_context("ppo", tmp_path, cache_dir, env=Countdown(length=3), model=model,
                      overrides={"algorithm.lr": 3e-3})
    rc.train(n_epochs=2)
    # every Countdown episode is 3 steps; action 1 pays 2 per step, so the best return is 6
    assert rc.evaluate(n_episodes=4)["eval_BaseEnvEvents/reward/mean_step_count"] == 3
    assert rc.policy.params["params"]["Dense_0"]["kernel"].shape == (1, 8)
    with pytest.raises(ConfigError, match="trained with an env object"):
        load_policy(rc.run_dir)
    loaded = load_policy(rc.run_dir, env=Countdown(length=3), model=model)
    np.testing.assert_array_equal(loaded.compute_action(np.ones((3, 1))), rc.compute_action(np.ones((3, 1))))


def test_an_env_object_names_the_run_by_its_registered_id_or_its_class(tmp_path):
    import gymnasium
    import python_envs  # noqa: F401  (registers MazeJaxTest/Countdown-v0)

    made = RunContext(env=gymnasium.make("CartPole-v1"), algorithm="es", runner="dev", echo=QUIET,
                      overrides={"log_base_dir": str(tmp_path)})
    assert made.env_spec.name == "CartPole-v1" and made.env_spec.reward_threshold == 475
    assert made.run_dir.startswith(str(tmp_path / "CartPole-v1-flatten_concat-es-dev"))
    made = RunContext(env=gymnasium.make("MazeJaxTest/Countdown-v0"), algorithm="es", echo=QUIET,
                      overrides={"log_base_dir": str(tmp_path)})  # an id with a namespace: a folder name still
    assert made.run_dir.startswith(str(tmp_path / "MazeJaxTest_Countdown-v0-flatten_concat-es-local"))
    own = RunContext(env=Countdown(length=3), algorithm="es", echo=QUIET, overrides={"log_base_dir": str(tmp_path)})
    assert own.env_spec.name == "Countdown" and "/Countdown-flatten_concat-es-local/" in own.run_dir
    assert not list(tmp_path.iterdir())  # nothing is written before training


def test_a_model_object_needs_an_n_outputs_field():
    import flax.linen as nn

    class NoOutputs(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(2)(x)

    with pytest.raises(ConfigError, match="needs an `n_outputs` field"):
        instantiate_network(NoOutputs(), 2)
    assert instantiate_network(FlattenConcatPolicy(n_outputs=0), 3, output_scale=1.0).n_outputs == 3


@pytest.mark.slow
def test_make_train_vmaps_over_seeds_and_learning_rates():
    cfg, _ = compose_config(["algorithm=ppo", "algorithm.n_epochs=2", "algorithm.epoch_length=1",
                             "runner.concurrency=2", "algorithm.n_rollout_steps=16", "algorithm.batch_size=16",
                             "model.hidden_units=[8]"])
    train = make_train(cfg, env="CartPole-v1")
    keys = jax.random.split(jax.random.key(0), 2)
    _, per_seed = jax.jit(jax.vmap(train))(keys)
    _, alone = jax.jit(train)(keys[1])
    assert per_seed["train_BaseEnvEvents/reward/step_count"].shape == (2, 2)  # (seeds, epochs)
    np.testing.assert_allclose(per_seed["policy_loss"][1], alone["policy_loss"], rtol=1e-4, atol=1e-6)
    lrs = jnp.array([1e-4, 1e-2])
    states, metrics = jax.jit(jax.vmap(train, in_axes=(None, {"lr": 0})))(keys[0], {"lr": lrs})
    np.testing.assert_allclose(metrics["learning_rate"][:, -1], lrs, rtol=1e-6)
    with pytest.raises(ValueError, match="unknown hyperparameters \\['learning_rate'\\]"):
        train(keys[0], {"learning_rate": 1e-3})


def test_play_in_batches_plays_exactly_n_episodes_with_folded_keys():
    calls = []

    def evaluate(state, key):
        calls.append(key)
        i = len(calls)
        return EpisodeStats.zeros(4, 10).add(jnp.ones(4, bool), jnp.full(4, float(i)), jnp.full(4, i))

    returns, lengths = play_in_batches(evaluate, None, jax.random.key(7), 10)
    assert returns.tolist() == [1] * 4 + [2] * 4 + [3] * 2 and lengths.tolist() == returns.tolist()
    assert [int(jax.random.key_data(k)[-1]) for k in calls] == [
        int(jax.random.key_data(jax.random.fold_in(jax.random.key(7), i))[-1]) for i in range(3)]


def test_episodes_that_do_not_end_count_in_no_statistic():
    def evaluate(state, key):  # envs 0 and 2 end an episode (returns 5 and 7); 1 and 3 never do
        return EpisodeStats.zeros(4, 10).add(jnp.array([True, False, True, False]), jnp.array([5.0, 0, 7, 0]),
                                             jnp.array([5, 0, 7, 0]))

    returns, lengths = play_in_batches(evaluate, None, jax.random.key(0), 4)
    np.testing.assert_array_equal(returns, [5, np.nan, 7, np.nan])
    np.testing.assert_array_equal(lengths, [5, np.nan, 7, np.nan])
    rows = episode_table(returns, lengths, "final")
    assert rows["final_BaseEnvEvents/reward/episode_count"] == 2
    assert rows["final_BaseEnvEvents/reward/mean"] == 6 and rows["final_BaseEnvEvents/reward/min"] == 5
    assert "2 of 4 episodes did not end" in unfinished_note(returns) and unfinished_note(returns[::2]) == ""


def test_a_policy_is_refused_by_an_env_it_does_not_fit():
    spec = make_gymnax("CartPole-v1")
    cfg, _ = compose_config(["model.hidden_units=[4]"])
    policy = build_policy(cfg.model, spec)
    params = policy.init(jax.random.key(0), spec.observation_example())
    check_fits(policy, params, spec)
    with pytest.raises(ConfigError, match="does not take env Countdown's observations"):
        check_fits(policy, params, as_env_spec(Countdown()))
    with pytest.raises(ConfigError, match="needs Categorical\\(n=3\\)"):
        check_fits(policy, params, make_gymnax("Acrobot-v1"))


@pytest.mark.parametrize("box", ["gaussian", "squashed_gaussian"])
def test_a_policy_fits_the_same_box_env_from_another_backend(box):
    """gymnax's Pendulum declares its bounds as scalars, gymnasium's as arrays (float32): one space. Another
    bound is refused, and the message shows the policy's own kind of distribution."""
    cfg, _ = compose_config(["model.hidden_units=[4]", f"model.box_distribution={box}"])
    spec = make_gymnax("Pendulum-v1")
    policy = build_policy(cfg.model, spec)
    params = policy.init(jax.random.key(0), spec.observation_example())
    check_fits(policy, params, make_env("Pendulum-v1", backend="gymnasium"))
    kind = "SquashedGaussian" if box == "squashed_gaussian" else "DiagGaussian"
    with pytest.raises(ConfigError, match=f"needs {kind}\\(shape=\\(1,\\), low=-1.0, high=1.0\\)"):
        check_fits(policy, params, make_gymnax("MountainCarContinuous-v0"))


def test_a_box_bound_is_one_float_where_every_dimension_shares_it():
    from maze_jax.models.distributions import bound_key

    assert bound_key(-2.0) == bound_key(np.full(3, -2.0, np.float32)) == -2.0
    assert bound_key(np.float64(0.1)) == bound_key(np.float32(0.1))  # the actions' float32
    assert bound_key([0.0, 1.0]) == (0.0, 1.0) and bound_key(np.array([np.inf, np.inf])) == np.inf


def test_run_context_trains_a_python_env_and_acts_on_its_own_observations(tmp_path, cache_dir):
    rc = tiny_context("ppo", tmp_path, cache_dir, env="gymnasium", overrides={"env.name": "LunarLander-v3"})
    final = rc.train(n_epochs=1)
    assert final["final_BaseEnvEvents/reward/episode_count"] == 10
    assert rc.compute_action(np.zeros(8, np.float32)) in range(4)
    assert rc.compute_action(np.zeros((3, 8), np.float32)).shape == (3,)
    assert rc.evaluate(n_episodes=3)["eval_BaseEnvEvents/reward/episode_count"] == 3
