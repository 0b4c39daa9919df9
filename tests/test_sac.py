"""SAC: the target-entropy rule, soft target updates, the warm-up buffer, truncation, bad input, and learning."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax_envs import IntRewards
from python_envs import Countdown

from maze_jax.algorithms.sac import SACConfig, action_heads, transitions
from maze_jax.config import ConfigError
from maze_jax.envs import as_env_spec, make_env
from maze_jax.models.distributions import Categorical, DiagGaussian, Joint, SquashedGaussian
from maze_jax.research import make_train
from maze_jax.shell.assembly import build_algorithm, build_trainer

SQUASHED = {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [32, 32], "non_lin": "relu",
            "box_distribution": "squashed_gaussian"}
SMALL = SACConfig(epoch_length=20, initial_buffer_size=50, batch_size=16, replay_buffer_size=500, n_epochs=2,
                  n_eval_episodes=1)


def test_target_entropy_follows_the_papers_for_box_and_discrete_heads():
    box = action_heads(SquashedGaussian((3,), -1.0, 1.0))
    assert box.target_entropy(1.0) == -3.0 and box.target_entropy(0.5) == -1.5
    discrete = action_heads(Joint((("0", Categorical(4)), ("1", Categorical(2))), stacked=True))
    assert discrete.discrete  # positive, 0.98 of the largest entropy per head (Maze flips the sign)
    assert discrete.target_entropy(1.0) == pytest.approx(0.98 * (math.log(4) + math.log(2)))


def test_a_dict_action_with_a_multi_discrete_entry_is_discrete_head_by_head():
    pick = Joint((("0", Categorical(2)), ("1", Categorical(3))), stacked=True)
    heads = action_heads(Joint((("move", Categorical(4)), ("pick", pick))))  # a Dict (or Tuple) action
    assert heads.discrete and [h.n for h in heads.heads] == [4, 2, 3]
    assert heads.q_slices() == [(0, 4), (4, 6), (6, 9)] and heads.n_q_outputs == 9
    action = {"move": jnp.array([3, 1]), "pick": jnp.array([[1, 2], [0, 0]])}
    parts = heads.actions(action)
    assert [p.tolist() for p in parts] == [[3, 1], [1, 0], [2, 0]]
    joined = heads.join(parts)
    assert joined["move"].tolist() == [3, 1] and joined["pick"].tolist() == [[1, 2], [0, 0]]
    assert [o.shape for o in heads.outputs(jnp.zeros((2, 9)))] == [(2, 4), (2, 2), (2, 3)]


def test_the_boxs_scale_is_taken_out_of_every_dimension_whether_its_bounds_are_scalars_or_arrays():
    """A (3,) Box in [-2, 2] as gymnax declares it (scalar bounds) and as gymnasium does (arrays): the same unit
    log-density, with log(2) taken out of each of the 3 dimensions."""
    out, action = jnp.array([[0.1, -0.2, 0.3, -1.0, -0.5, 0.0]]), jnp.array([[0.4, -1.2, 2.0]])
    scalar = action_heads(SquashedGaussian((3,), -2.0, 2.0))
    arrays = action_heads(SquashedGaussian((3,), (-2.0, -2.0, -2.0), (2.0, 2.0, 2.0)))
    unit = action_heads(SquashedGaussian((3,), -1.0, 1.0))
    np.testing.assert_allclose(scalar.unit_log_prob(out, action), arrays.unit_log_prob(out, action), rtol=1e-6)
    np.testing.assert_allclose(scalar.unit_log_prob(out, action), unit.unit_log_prob(out, action), rtol=1e-6)


def test_action_spaces_sac_cannot_learn_are_one_line_each():
    with pytest.raises(ConfigError, match="box_distribution=squashed_gaussian"):
        action_heads(DiagGaussian((1,), -1.0, 1.0))
    with pytest.raises(ConfigError, match="mixes Discrete and Box"):
        action_heads(Joint((("a", Categorical(2)), ("b", SquashedGaussian((1,), -1.0, 1.0)))))


@pytest.mark.parametrize("change, message", [
    ({"batch_size": 600}, "batch_size=600 is above algorithm.replay_buffer_size=500"),
    ({"initial_buffer_size": 501}, "initial_buffer_size=501 is above"),
    ({"replay_buffer_size": 10**11, "batch_size": 1}, "GiB"),
])
def test_buffer_settings_that_cannot_work_are_one_line_before_compiling(change, message):
    spec = make_env("Pendulum-v1")
    with pytest.raises(ConfigError, match=message):
        algorithm = build_algorithm(SACConfig(**{**SMALL.__dict__, **change}), spec, SQUASHED)
        build_trainer(algorithm, spec)


def test_an_unbounded_box_is_one_line():
    import gymnasium

    class Unbounded(Countdown):
        def __init__(self):
            super().__init__()
            self.action_space = gymnasium.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    with pytest.raises(ConfigError, match="bounded Box"):
        build_algorithm(SMALL, as_env_spec(Unbounded()), SQUASHED)
    with pytest.raises(ConfigError, match="needs a bounded Box .*other than SAC, which needs the bounds"):
        build_algorithm(SMALL, as_env_spec(Unbounded()), {**SQUASHED, "box_distribution": "auto"})  # SAC's default


@pytest.mark.parametrize("model", ["flatten_concat", "module"])
def test_a_models_auto_box_distribution_is_squashed_for_sac_and_clipped_for_ppo(model):
    """`box_distribution: auto`, the default of flatten_concat and pixel_obs (and of flax module objects): SAC gets
    the squashed Gaussian it needs (Maze's presets squash Box actions), PPO the clipped Gaussian."""
    from maze_jax.algorithms.actor_critic import ActorCriticConfig
    from maze_jax.models import FlattenConcatPolicy
    from maze_jax.shell.settings import compose_config

    cfg = FlattenConcatPolicy(n_outputs=1, hidden_units=(8,)) if model == "module" else \
        compose_config([f"model={model}", "model.hidden_units=[8]"])[0].model
    assert model == "module" or cfg.box_distribution == compose_config(["model=pixel_obs"])[0].model.box_distribution \
        == "auto"
    spec = make_env("Pendulum-v1", backend="gymnax")
    assert isinstance(build_algorithm(SMALL, spec, cfg).policy.dist, SquashedGaussian)
    ppo = build_algorithm(ActorCriticConfig(n_envs=2, n_rollout_steps=4, batch_size=8), spec, cfg)
    assert type(ppo.policy.dist) is DiagGaussian


def test_warm_up_acts_uniformly_and_fills_the_buffer_before_update_zero():
    spec = make_env("Pendulum-v1")
    algorithm = build_algorithm(SMALL, spec, SQUASHED)
    trainer = build_trainer(algorithm, spec)
    state = jax.jit(trainer.init)(jax.random.key(0), jax.random.key(1))
    buffer = state.learner.buffer
    assert int(buffer.current_index) == 50 and int(state.learner.step) == 0
    actions = np.asarray(jnp.tanh(buffer.experience["action"][0, :50]))
    assert actions.min() < -0.5 and actions.max() > 0.5  # uniform over the bounds, not the fresh policy's mode
    assert float(algorithm.acting(state.learner)["random"]) == 0.0  # the policy acts from now on


def test_an_env_with_int_rewards_fills_the_buffer_with_float_rewards():
    spec = as_env_spec(IntRewards())  # bsuite's UmbrellaChain and gymnax's BernoulliBandit pay int32 rewards
    algorithm = build_algorithm(SMALL, spec, {"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [8]})
    state = jax.jit(build_trainer(algorithm, spec).init)(jax.random.key(0), jax.random.key(1))
    rewards = state.learner.buffer.experience["reward"][0, :50]
    assert rewards.dtype == jnp.float32 and set(np.unique(np.asarray(rewards))) == {1.0, 2.0}


def test_a_host_update_writes_into_the_buffer_in_place_and_leaves_the_callers_learner_whole():
    from flax import struct

    from maze_jax.shell.collectors.host import BufferInPlace

    class Learner(struct.PyTreeNode):
        params: jax.Array
        buffer: dict

    def add(learner, item):  # a replay learner's step: the item written at the buffer's index
        index = learner.buffer["index"]
        buffer = {"items": learner.buffer["items"].at[index].set(item), "index": index + 1}
        return learner.replace(params=learner.params + item, buffer=buffer), item.sum()

    step = BufferInPlace(add)
    learner = Learner(jnp.zeros((2, 3)), {"items": jnp.zeros((2, 4, 3)), "index": jnp.zeros(2, jnp.int32)})
    kept, _ = step(learner, jnp.ones((2, 3)))  # not in place: the caller's learner stays readable
    assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(learner))
    later, total = step(kept, 2 * jnp.ones((2, 3)), in_place=True)
    assert all(leaf.is_deleted() for leaf in jax.tree.leaves(kept.buffer))  # given to XLA, not copied
    assert not kept.params.is_deleted()  # the parameters the actors may hold are never given away
    np.testing.assert_array_equal(later.buffer["items"][:, :2], [[[1.0] * 3, [2.0] * 3]] * 2)
    np.testing.assert_array_equal(later.params, 3 * np.ones((2, 3)))
    np.testing.assert_array_equal(total, [6.0, 6.0])


def test_an_epoch_on_a_python_env_leaves_the_state_it_started_from_whole():
    config = SACConfig(**{**SMALL.__dict__, "epoch_length": 3})
    spec = as_env_spec(Countdown())
    trainer = build_trainer(build_algorithm(config, spec, SQUASHED), spec, n_seeds=2)  # the loop's own arrays
    state = trainer.init(jax.random.key(0), jax.random.key(1))
    try:
        new_state, _ = trainer.train_epoch(state)
        again, _ = trainer.train_epoch(new_state)
    finally:
        trainer.close()
    for kept in (state, new_state):  # what the loop keeps: the last good state and the best one
        assert not any(leaf.is_deleted() for leaf in jax.tree.leaves(kept))
    np.testing.assert_array_equal(again.learner.buffer.current_index, [50 + 6] * 2)


def test_a_rollouts_keys_compile_once_for_every_rollout():
    from maze_jax.shell.collectors import host

    keys = jax.random.split(jax.random.key(0), 7)  # a seed count no other test uses
    host.agent_keys(keys, 0, 0)
    host.fold_in(keys[0], 0)
    compiled = host._agent_keys._cache_size(), host.fold_in._cache_size()
    for index in range(1, 5):
        host.agent_keys(keys, index % 2, index)
        host.fold_in(keys[0], index)
    assert (host._agent_keys._cache_size(), host.fold_in._cache_size()) == compiled  # 2 ms a call when it traced


@pytest.mark.slow
def test_one_update_moves_the_targets_by_tau():
    spec = make_env("Pendulum-v1")
    config = SACConfig(**{**SMALL.__dict__, "tau": 0.25, "num_batches_per_iter": 1, "epoch_length": 1})
    algorithm = build_algorithm(config, spec, SQUASHED)
    trainer = build_trainer(algorithm, spec)
    state = jax.jit(trainer.init)(jax.random.key(0), jax.random.key(1))
    before = state.learner.params
    after = jax.jit(trainer.train_epoch)(state)[0].learner.params
    for target, old, new in zip(*(jax.tree.leaves(p) for p in (after["q_target"], before["q_target"], after["q"]))):
        np.testing.assert_allclose(target, 0.75 * old + 0.25 * new, rtol=1e-5, atol=1e-6)
    assert any(not np.allclose(w[0], w[1]) for w in jax.tree.leaves(before["q"]))  # the twins start apart


def test_a_truncated_step_bootstraps_from_its_final_observation_and_a_terminated_one_does_not():
    from maze_jax.algorithms.actor_critic import Trajectory

    zeros = jnp.zeros((2, 1))
    trajectory = Trajectory(obs=jnp.array([[[0.0]], [[1.0]]]), action=zeros, log_prob=zeros, value=zeros,
                            reward=zeros, terminated=jnp.array([[False], [True]]),
                            truncated=jnp.array([[True], [False]]), final_obs=jnp.array([[[5.0]], [[6.0]]]),
                            last_obs=jnp.array([[0.0]]))
    items = transitions(trajectory)
    np.testing.assert_array_equal(items["next_obs"][:, 0], [5.0, 6.0])  # the step's own end, not the reset
    np.testing.assert_array_equal(items["terminated"], [False, True])  # truncation keeps its bootstrap


@pytest.mark.learning
@pytest.mark.parametrize("env", ["CartPole-v1", "python:Countdown"])
def test_discrete_sac_trains_on_jax_and_python_envs(env):
    spec = as_env_spec(Countdown()) if env.startswith("python") else env
    train = make_train(SMALL, spec, SQUASHED, eval_episodes=1, compilation_cache=None)
    state, metrics = train(jax.random.key(0))
    assert np.all(np.isfinite(np.asarray(metrics["critic_value_loss"])))
    assert int(np.asarray(state.learner.step).reshape(-1)[0]) == 2 * SMALL.epoch_length


@pytest.mark.learning
def test_sac_runs_over_seeds_and_learning_rates_in_one_program():
    train = make_train(SMALL, "Pendulum-v1", SQUASHED, compilation_cache=None)
    keys = jax.random.split(jax.random.key(0), 2)
    lrs = jnp.array([1e-3, 3e-3])
    state, metrics = jax.jit(jax.vmap(lambda k, lr: train(k, {"lr": lr})))(keys, lrs)
    losses = np.asarray(metrics["policy_loss"])
    assert losses.shape == (2, 2) and not np.allclose(losses[0], losses[1])


@pytest.mark.learning
def test_sac_learns_gymnax_pendulum_within_a_bounded_budget():
    config = SACConfig(epoch_length=500, initial_buffer_size=500, batch_size=128, lr=0.003,
                       replay_buffer_size=20_000, n_epochs=14, n_eval_episodes=8)
    model = {**SQUASHED, "hidden_units": [64, 64]}
    train = make_train(config, "Pendulum-v1", model, eval_episodes=8, compilation_cache=None)
    _, metrics = jax.jit(train)(jax.random.key(0))
    assert np.max(np.asarray(metrics["eval_BaseEnvEvents/reward/mean"])) > -250.0


def test_loss_terms_of_ppo_are_refused_for_sac_in_one_line():
    with pytest.raises(ConfigError, match="replace or extend PPO's and A2C's loss terms; sac has losses of its own"):
        make_train(SMALL, "Pendulum-v1", SQUASHED, value_loss=lambda *a: 0.0, compilation_cache=None)
