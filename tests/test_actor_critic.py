"""The ideas of the actor-critic trainers: GAE, the PPO loss, minibatch shuffling, truncation and vmapped seeds."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import init_state, make_trainer
from maze_jax.algorithms.actor_critic import shuffled_minibatches
from maze_jax.algorithms.gae import compute_gae
from maze_jax.algorithms.losses import normalize, ppo_clipped, ppo_diagnostics
from maze_jax.algorithms.optim import clip_by_global_norm


def test_gae_by_hand_with_termination_and_truncation():
    # one env, 4 steps; episode terminates after step 1; step 3 is a truncation whose reward carries
    # the bootstrap gamma * V(final obs) already (collect_rollout adds it), so both cut the trace.
    gamma, lam = 0.9, 0.5
    rewards = jnp.array([[1.0], [2.0], [0.5], [3.0 + 0.9 * 4.0]])
    values = jnp.array([[0.5], [1.0], [2.0], [1.5]])
    dones = jnp.array([[False], [True], [False], [True]])
    last_value = jnp.array([10.0])  # value after the rollout: must not leak through the cut at step 3
    adv, targets = compute_gae(rewards, values, dones, last_value, gamma, lam)
    d3 = 3.0 + 0.9 * 4.0 - 1.5
    a3 = d3
    d2 = 0.5 + gamma * 1.5 - 2.0
    a2 = d2 + gamma * lam * a3
    a1 = 2.0 - 1.0
    d0 = 1.0 + gamma * 1.0 - 0.5
    a0 = d0 + gamma * lam * a1
    np.testing.assert_allclose(adv[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(targets, adv + values, rtol=1e-6)


def test_gae_with_lambda_one_is_the_discounted_return_minus_value():
    rewards = jnp.ones((5, 1))
    values = jnp.zeros((5, 1))
    adv, _ = compute_gae(rewards, values, jnp.zeros((5, 1), bool), jnp.array([2.0]), 0.5, 1.0)
    expected = [sum(0.5**k for k in range(5 - t)) + 0.5 ** (5 - t) * 2.0 for t in range(5)]
    np.testing.assert_allclose(adv[:, 0], expected, rtol=1e-6)


def test_ppo_loss_by_hand():
    log_prob = jnp.log(jnp.array([0.5, 0.2, 0.9]))
    old = jnp.log(jnp.array([0.25, 0.4, 0.9]))  # ratios 2.0, 0.5, 1.0
    adv = jnp.array([1.0, -2.0, 3.0])
    hparams = types.SimpleNamespace(clip_range=0.2)
    loss = ppo_clipped(log_prob, old, adv, hparams)
    kl, clip_fraction = ppo_diagnostics(log_prob, old, 0.2)
    # min(2*1, 1.2*1)=1.2 ; min(0.5*-2, 0.8*-2)=-1.6 ; min(3, 3)=3
    np.testing.assert_allclose(loss, [-1.2, 1.6, -3.0], rtol=1e-6)
    np.testing.assert_allclose(clip_fraction, 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(kl, np.mean([1 - np.log(2), -0.5 - np.log(0.5), 0.0]), rtol=1e-5)
    np.testing.assert_allclose(normalize(jnp.array([1.0, 3.0])), [-1.0, 1.0], atol=1e-6)


def test_minibatches_cover_every_sample_once_per_pass():
    batch = {"x": jnp.arange(12), "y": jnp.arange(12) * 10}
    minibatches = shuffled_minibatches(jax.random.key(0), batch, 3)
    assert minibatches["x"].shape == (3, 4)
    assert sorted(np.asarray(minibatches["x"]).ravel().tolist()) == list(range(12))
    np.testing.assert_array_equal(minibatches["y"], minibatches["x"] * 10)  # fields stay aligned
    assert not np.array_equal(np.asarray(minibatches["x"]).ravel(), np.arange(12))  # shuffled


def test_gradient_clipping_zero_means_off():
    grads = {"a": jnp.array([3.0, 4.0])}
    clipped, norm = clip_by_global_norm(grads, 1.0)
    np.testing.assert_allclose(norm, 5.0)
    np.testing.assert_allclose(clipped["a"], [0.6, 0.8], rtol=1e-6)
    np.testing.assert_allclose(clip_by_global_norm(grads, 0.0)[0]["a"], [3.0, 4.0])


def tiny_trainer(algorithm: str, *overrides):
    batch = ["algorithm.batch_size=8"] if algorithm == "ppo" else []
    return make_trainer([f"algorithm={algorithm}", "runner.concurrency=4", "algorithm.n_rollout_steps=8",
                         "algorithm.epoch_length=2", "model.hidden_units=[8]", *batch, *overrides])[1]


@pytest.mark.slow
def test_vmapped_seeds_equal_separate_runs():
    trainer = tiny_trainer("ppo")
    keys = jax.random.split(jax.random.key(1), 3)
    init = lambda key: trainer.init(key, jax.random.fold_in(key, 1))
    states, metrics = jax.jit(jax.vmap(trainer.train_epoch))(jax.vmap(init)(keys))
    for i in range(3):
        single, single_metrics = jax.jit(trainer.train_epoch)(init(keys[i]))
        for a, b in zip(jax.tree.leaves(jax.tree.map(lambda x: x[i], states.learner.params)),
                        jax.tree.leaves(single.learner.params)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    first = jax.tree.leaves(states.learner.params)[0]
    assert not np.allclose(first[0], first[1])


def test_critic_burn_in_leaves_the_policy_untouched():
    trainer = tiny_trainer("a2c", "algorithm.critic_burn_in_epochs=1")
    state = init_state(trainer)
    new_state, _ = jax.jit(trainer.train_epoch)(state)
    old, new = state.learner.params, new_state.learner.params
    for a, b in zip(jax.tree.leaves(old["policy"]), jax.tree.leaves(new["policy"])):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(old["critic"]), jax.tree.leaves(new["critic"])))


def test_shared_critic_is_one_network_with_a_value_output():
    trainer = tiny_trainer("ppo", "critic=shared")
    state = init_state(trainer)
    assert set(state.learner.params) == {"policy"}
    assert jax.tree.leaves(state.learner.params["policy"])[-1].shape[-1] == 3  # 2 logits + 1 value (last kernel)
    new_state, metrics = jax.jit(trainer.train_epoch)(state)
    assert np.isfinite(float(metrics["value_loss"]))


def test_the_collector_marks_truncations_and_the_learner_bootstraps_them():
    from maze_jax.algorithms.actor_critic import advantages_and_targets
    from maze_jax.collectors.jax_envs import collect_rollout
    from maze_jax.envs import EpisodeStats, make_gymnax
    from maze_jax.envs.episodes import EnvBatch
    from maze_jax.models import build_actor_critic

    # CartPole pays 1 per step and cannot fall within 3 steps from its start state: every end is a truncation
    spec = make_gymnax("CartPole-v1")
    spec = spec._replace(params=spec.params.replace(max_steps_in_episode=3))
    _, trainer = make_trainer(["algorithm=ppo", "runner.concurrency=1", "algorithm.n_rollout_steps=6",
                               "algorithm.batch_size=6", "algorithm.epoch_length=1", "model.hidden_units=[4]"], spec)
    algorithm, state = trainer.algorithm, init_state(trainer)
    envs = EnvBatch.reset(spec.env, spec.params, jax.random.key(1), 1)
    _, stats, trajectory = collect_rollout(algorithm.explore, state.learner.params, spec, envs, EpisodeStats.zeros(1, 3),
                                           jax.random.key(2), jax.random.key(3), 6)
    np.testing.assert_array_equal(trajectory.truncated[:, 0], [0, 0, 1, 0, 0, 1])
    np.testing.assert_array_equal(trajectory.terminated[:, 0], [0] * 6)
    np.testing.assert_array_equal(stats.count, [2])
    # the observation a truncated episode ended in is kept (the next one is already the reset's)
    assert not np.allclose(trajectory.final_obs[2], trajectory.obs[3])
    # With a critic that outputs a constant c, a truncation's advantage bootstraps gamma * c; a termination would not
    params = jax.tree.map(jnp.zeros_like, state.learner.params)
    params["critic"]["params"]["Dense_1"]["bias"] = jnp.array([2.0])  # V(s) = 2 everywhere
    hparams = algorithm.hyperparams
    gamma = float(hparams.gamma)
    model = build_actor_critic({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, None, spec)
    advantages, _, values = advantages_and_targets(params, trajectory, hparams, model)
    np.testing.assert_allclose(values, jnp.full((6, 1), 2.0))  # the critic's, not the ones the actors stored
    one_episode = [1 + gamma * 1 + gamma**2 * (1 + gamma * 2) - 2, 1 + gamma * (1 + gamma * 2) - 2, 1 + gamma * 2 - 2]
    np.testing.assert_allclose(advantages[:, 0], one_episode * 2, rtol=1e-5)
    terminated = trajectory._replace(terminated=trajectory.truncated)
    advantages, _, _ = advantages_and_targets(params, terminated, hparams, model)
    np.testing.assert_allclose(advantages[:, 0], [1 + gamma + gamma**2 - 2, 1 + gamma - 2, 1 - 2] * 2, rtol=1e-5)



def a2c_policy_loss_for(advantages):
    """A2C's policy loss (and info) of a fixed batch of CartPole samples with the given advantages."""
    from maze_jax.algorithms.actor_critic import loss
    from maze_jax.algorithms.losses import Losses
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_actor_critic

    spec = make_gymnax("CartPole-v1")
    model = build_actor_critic({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, None, spec)
    params = model.init(jax.random.key(0), spec.observation_example())
    n = advantages.shape[0]
    batch = {"obs": jax.random.normal(jax.random.key(1), (n, 4)), "action": jnp.arange(n) % 2,
             "log_prob": jnp.zeros(n), "value": jnp.zeros(n), "advantage": advantages, "target": jnp.zeros(n)}
    hparams = types.SimpleNamespace(clip_range=0.2)
    weights = {"policy": 1.0, "value": 0.5, "entropy": 0.0}
    return loss(params, batch, hparams, weights, model, Losses.for_algorithm(False), None, 0, False)[1]["policy_loss"]


def test_gae_takes_every_value_from_the_learners_critic_not_the_lagged_actors():
    from maze_jax.algorithms.actor_critic import Trajectory, advantages_and_targets, batch_values
    from maze_jax.algorithms.gae import compute_gae
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_actor_critic

    spec = make_gymnax("CartPole-v1")
    model = build_actor_critic({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, None, spec)
    params = model.init(jax.random.key(0), spec.observation_example())
    obs = jax.random.normal(jax.random.key(1), (5, 2, 4))
    done = jnp.zeros((5, 2), bool).at[2, 0].set(True)
    trajectory = Trajectory(obs=obs, action=None, log_prob=None, value=jnp.full((5, 2), 7.0),  # a stale critic's
                            reward=jnp.ones((5, 2)), terminated=jnp.zeros((5, 2), bool), truncated=done,
                            final_obs=obs + 1.0, last_obs=obs[-1] - 1.0)
    hparams = make_trainer(["algorithm=a2c"])[1].algorithm.hyperparams
    advantages, targets, values = advantages_and_targets(params, trajectory, hparams, model)
    np.testing.assert_allclose(values, batch_values(model, params, obs), rtol=1e-6)
    gamma = hparams.gamma
    bootstrap = jnp.where(done, gamma * batch_values(model, params, obs + 1.0), 0.0)
    want = compute_gae(trajectory.reward + bootstrap, values, done, model.value(params, obs[-1] - 1.0), gamma,
                       hparams.gae_lambda)
    np.testing.assert_allclose(advantages, want[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(targets, want[1], rtol=1e-5, atol=1e-6)


def test_a2c_weights_a_lagged_actors_samples_by_the_importance_ratio():
    from maze_jax.algorithms.losses import policy_gradient

    log_prob, advantage = jnp.array([-0.5, -1.5, -0.2]), jnp.array([1.0, -2.0, 0.5])
    grad = lambda old: jax.grad(lambda lp: policy_gradient(lp, old, advantage, None).sum())(log_prob)  # noqa: E731
    np.testing.assert_allclose(grad(log_prob), -advantage, rtol=1e-6)  # on-policy: Maze's -log pi A
    ratio = jnp.array([2.0, 0.5, 1.0])  # the learner's policy takes these actions 2x, 0.5x, 1x as often
    np.testing.assert_allclose(grad(log_prob - jnp.log(ratio)), -ratio * advantage, rtol=1e-5)


def test_a2c_normalises_advantages_as_ppo_does():
    advantages = jnp.array([1.0, -2.0, 0.5, 3.0, -1.0, 0.0])
    # (a - mean) / std: a constant shift or a positive scale of the advantages leaves the loss unchanged
    np.testing.assert_allclose(a2c_policy_loss_for(advantages + 5.0), a2c_policy_loss_for(advantages), atol=1e-6)
    np.testing.assert_allclose(a2c_policy_loss_for(advantages * 10.0), a2c_policy_loss_for(advantages), atol=1e-6)


def test_advantages_are_normalised_per_sub_step():
    x = jnp.array([1.0, 100.0, 3.0, 300.0, 5.0, 200.0])
    ids = jnp.array([0, 1, 0, 1, 0, 1])
    out = normalize(x, ids, 2)
    for i in (0, 1):
        np.testing.assert_allclose(out[ids == i].mean(), 0.0, atol=1e-6)
        np.testing.assert_allclose(out[ids == i].std(), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[ids == 0], (x[ids == 0] - 3.0) / np.std([1.0, 3.0, 5.0]), rtol=1e-5)


def test_a_structured_env_discounts_once_per_whole_env_step():
    from maze_jax.algorithms.actor_critic import ACHyperparams, Trajectory, advantages_and_targets

    # two env steps of two sub-steps each; only the last sub-step of a step pays. gamma 0.5, lambda 1, V = 0:
    # the sub-steps of one step see the same discount, so A = [1 + 0.5 * 1, 1 + 0.5 * 1, 1, 1]
    obs = {"x": jnp.zeros((4, 1, 1)), "actor_id": jnp.array([[0], [1], [0], [1]])}
    trajectory = Trajectory(obs=obs, action=None, log_prob=None, value=jnp.zeros((4, 1)),
                            reward=jnp.array([[0.0], [1.0], [0.0], [1.0]]), terminated=jnp.zeros((4, 1), bool),
                            truncated=jnp.zeros((4, 1), bool), final_obs=obs,
                            last_obs={"x": jnp.zeros((1, 1)), "actor_id": jnp.array([0])})
    hparams = ACHyperparams(*[jnp.float32(v) for v in (1e-3, 0.5, 1.0, 1.0, 0.5, 0.0, 0.0, 0.2, 0.0)])
    zero_critic = types.SimpleNamespace(value=lambda params, obs: jnp.zeros(obs["actor_id"].shape[0]))
    advantages, targets, _ = advantages_and_targets(None, trajectory, hparams, zero_critic, lambda o: o["actor_id"])
    np.testing.assert_allclose(advantages[:, 0], [1.5, 1.5, 1.0, 1.0])
    # lambda likewise: with lambda 0.5 the trace decays once per env step
    advantages, _, _ = advantages_and_targets(None, trajectory, hparams.replace(gae_lambda=jnp.float32(0.5)),
                                              zero_critic, lambda o: o["actor_id"])
    np.testing.assert_allclose(advantages[:, 0], [1.25, 1.25, 1.0, 1.0], rtol=1e-6)


def test_critic_burn_in_trains_the_critic_with_weight_one_whatever_value_loss_coef():
    runs = []
    for coef in (0.5, 1.0):
        trainer = tiny_trainer("a2c", "algorithm.critic_burn_in_epochs=1", f"algorithm.value_loss_coef={coef}")
        state, _ = jax.jit(trainer.train_epoch)(init_state(trainer))
        runs.append(state.learner.params["critic"])
    for a, b in zip(jax.tree.leaves(runs[0]), jax.tree.leaves(runs[1])):
        np.testing.assert_array_equal(a, b)  # Maze: value loss 1.0, policy and entropy 0.0 during burn-in
