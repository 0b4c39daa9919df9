"""The ideas of OpenAI-ES: centred ranks, antithetic pairs, and a gradient that finds a known optimum."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from maze_jax.algorithms.es import antithetic_population, centered_ranks, es_gradient


def test_centered_ranks_span_minus_half_to_half_in_order():
    ranks = centered_ranks(jnp.array([10.0, -3.0, 7.0, 1000.0, 0.5]))
    np.testing.assert_allclose(ranks, [0.25, -0.5, 0.0, 0.5, -0.25])


def test_tied_values_share_their_average_rank():
    np.testing.assert_allclose(centered_ranks(jnp.array([5.0, 1.0, 5.0, 5.0, 0.0])), [0.25, -0.25, 0.25, 0.25, -0.5])


def test_centered_ranks_ignore_the_scale_of_returns():
    x = jax.random.normal(jax.random.key(0), (32,))
    np.testing.assert_array_equal(centered_ranks(x), centered_ranks(1e6 * x - 3))


def test_antithetic_pairs_are_mirrored_around_the_mean():
    theta = jnp.arange(5.0)
    noise = jax.random.normal(jax.random.key(1), (3, 5))
    pop = antithetic_population(theta, noise, 0.1)
    assert pop.shape == (6, 5)
    np.testing.assert_allclose((pop[:3] + pop[3:]) / 2, jnp.broadcast_to(theta, (3, 5)), atol=1e-6)
    np.testing.assert_allclose(pop[:3] - pop[3:], 0.2 * noise, atol=1e-6)


def test_es_gradient_points_uphill_and_is_zero_for_equal_fitness():
    noise = jax.random.normal(jax.random.key(2), (64, 3))
    target = jnp.array([1.0, -2.0, 0.5])
    theta = jnp.zeros(3)
    fitness = -jnp.sum((antithetic_population(theta, noise, 0.1) - target) ** 2, axis=1)
    g = es_gradient(fitness, noise)
    assert jnp.dot(g, target - theta) > 0.5 * jnp.linalg.norm(g) * jnp.linalg.norm(target)
    np.testing.assert_allclose(es_gradient(jnp.zeros(128), noise), 0.0)


def test_es_with_adam_finds_the_optimum_of_a_quadratic():
    target = jnp.array([1.0, -2.0, 0.5, 3.0])
    opt = optax.adam(0.05)

    def update(carry, key):
        theta, opt_state = carry
        noise = jax.random.normal(key, (32, 4))
        fitness = -jnp.sum((antithetic_population(theta, noise, 0.05) - target) ** 2, axis=1)
        updates, opt_state = opt.update(-es_gradient(fitness, noise), opt_state)
        return (theta + updates, opt_state), None

    theta = jnp.zeros(4)
    (theta, _), _ = jax.lax.scan(update, (theta, opt.init(theta)), jax.random.split(jax.random.key(3), 400))
    np.testing.assert_allclose(theta, target, atol=0.1)


def test_vmapped_training_over_seeds_and_learning_rates_equals_separate_runs():
    from maze_jax.algorithms.es import ESConfig, make_es
    from maze_jax.collectors.jax_envs import jax_trainer
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_policy

    spec = make_gymnax("CartPole-v1")
    spec = spec._replace(params=spec.params.replace(max_steps_in_episode=50))
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [8]}, spec)
    algorithm = make_es(ESConfig(population=8, n_eval_episodes=2), policy, spec.observation_example())
    trainer = jax_trainer(algorithm, spec)
    keys, lrs = jax.random.split(jax.random.key(0), 2), jnp.array([0.01, 0.05])
    init = lambda key, lr: trainer.init(key, jax.random.fold_in(key, 1), algorithm.hyperparams.replace(step_size=lr))
    states, metrics = jax.jit(jax.vmap(trainer.train_epoch))(jax.vmap(init)(keys, lrs))
    theta = lambda params: ravel_pytree(params)[0]
    for i in range(2):
        single, single_metrics = jax.jit(trainer.train_epoch)(init(keys[i], lrs[i]))
        np.testing.assert_allclose(theta(jax.tree.map(lambda x: x[i], states.learner.params)),
                                   theta(single.learner.params), rtol=1e-5, atol=1e-6)
    assert not np.allclose(*(theta(jax.tree.map(lambda x: x[i], states.learner.params)) for i in range(2)))


def test_max_steps_caps_training_episodes_but_not_evaluation():
    from conftest import init_state, make_trainer
    from maze_jax.envs import make_gymnax

    # Pendulum never terminates: every episode lasts exactly its time limit (200 steps)
    _, trainer = make_trainer(["algorithm.n_rollouts_per_update=4", "algorithm.max_steps=20", "model.hidden_units=[8]",
                               "runner.n_eval_rollouts=3"], make_gymnax("Pendulum-v1"))
    state = init_state(trainer)
    _, metrics = jax.jit(trainer.train_epoch)(state)
    assert float(metrics["train_BaseEnvEvents/reward/mean_step_count"]) == 20.0
    evaluation = trainer.evaluate(state, jax.random.key(1))
    np.testing.assert_array_equal(evaluation.length_sum, [200, 200, 200])


def test_max_steps_counts_whole_steps_of_a_structured_env():
    from conftest import init_state, make_trainer

    # each cutting step is two sub-steps: a cap of 5 steps ends every episode after 10 calls of `step`
    _, trainer = make_trainer(["env=tutorial_cutting_2d_struct_masked", "model=tutorial_cutting_2d_struct_masked",
                               "algorithm.n_rollouts_per_update=4", "algorithm.max_steps=5", "runner.n_eval_rollouts=2"])
    _, metrics = jax.jit(trainer.train_epoch)(init_state(trainer))
    assert int(metrics["train_BaseEnvEvents/reward/episode_count"]) == 4
    assert float(metrics["train_BaseEnvEvents/reward/mean_step_count"]) == 10.0
    assert np.isfinite(float(metrics["train_BaseEnvEvents/reward/mean"]))


def test_sgd_momentum_is_mazes_exponential_average():
    from maze_jax.algorithms import es
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_policy

    spec = make_gymnax("CartPole-v1")
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, spec)
    config = es.ESConfig(population=8, optimizer="sgd", step_size=0.1, l2_penalty=0.01)
    algorithm = es.make_es(config, policy, spec.observation_example())
    state = algorithm.init(jax.random.key(0), algorithm.hyperparams)
    theta = ravel_pytree(state.params)[0]
    fitness = jnp.arange(8.0)
    g = es.es_gradient(fitness, es.noise(state, 8))
    direction = -g + 0.01 * theta
    # v = 0.9 v + 0.1 g' from v = 0, then theta - step_size * v: a tenth of plain SGD's first step
    first, _ = es.step(state, fitness, population=8, optimizer="sgd")
    np.testing.assert_allclose(ravel_pytree(first.params)[0], theta - 0.1 * 0.1 * direction, rtol=1e-5, atol=1e-7)
    second, _ = es.step(first, fitness, population=8, optimizer="sgd")
    theta1 = ravel_pytree(first.params)[0]
    g2 = es.es_gradient(fitness, es.noise(first, 8))
    v2 = 0.9 * 0.1 * direction + 0.1 * (-g2 + 0.01 * theta1)
    np.testing.assert_allclose(ravel_pytree(second.params)[0], theta1 - 0.1 * v2, rtol=1e-5, atol=1e-7)


def test_antithetic_pairs_start_from_the_same_env_states():
    from maze_jax.algorithms import es
    from maze_jax.collectors.jax_envs import fresh_rollout
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_policy

    spec = make_gymnax("CartPole-v1")
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [8]}, spec)
    algorithm = es.make_es(es.ESConfig(population=16), policy, spec.observation_example())
    # a vanishing perturbation: both members of a pair act alike, so only their env states could differ
    state = algorithm.init(jax.random.key(0), algorithm.hyperparams.replace(noise_stddev=jnp.float32(1e-9)))
    _, trajectory = fresh_rollout(algorithm, spec, algorithm.acting(state), jax.random.key(2), jax.random.key(1), 200)
    fitness = np.asarray(es.fitness(trajectory))
    np.testing.assert_array_equal(fitness[:8], fitness[8:])  # pair i is members i and i + 8
    assert len(set(fitness[:8].tolist())) > 1  # the pairs themselves start from different states


def test_members_act_on_the_mode_or_sample_as_configured():
    from conftest import Countdown
    from maze_jax.algorithms import es
    from maze_jax.collectors.jax_envs import fresh_rollout
    from maze_jax.envs import as_env_spec
    from maze_jax.models import build_policy

    spec = as_env_spec(Countdown(length=1))  # one step per episode, paying 1 + action
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, spec)
    returns = {}
    for mode in (True, False):
        algorithm = es.make_es(es.ESConfig(population=64, deterministic=mode), policy, spec.observation_example())
        state = algorithm.init(jax.random.key(0), algorithm.hyperparams.replace(noise_stddev=jnp.float32(1e-9)))
        _, trajectory = fresh_rollout(algorithm, spec, algorithm.acting(state), jax.random.key(2), jax.random.key(1), 1)
        returns[mode] = np.asarray(es.fitness(trajectory))
    assert len(set(returns[True].tolist())) == 1  # (nearly) equal members' mode: the same action for every member
    assert set(returns[False].tolist()) == {1.0, 2.0}  # sampled: both actions
    np.testing.assert_array_equal(returns[False][:32], returns[False][32:])  # pairs share their sampling noise


def test_es_counts_the_actions_of_the_episodes_its_members_played_as_maze_rows():
    from maze_jax.algorithms import es
    from maze_jax.algorithms.actor_critic import Trajectory
    from maze_jax.envs import make_gymnax
    from maze_jax.models import build_policy

    spec = make_gymnax("CartPole-v1")
    policy = build_policy({"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [4]}, spec)
    algorithm = es.make_es(es.ESConfig(population=2), policy, spec.observation_example())
    state = algorithm.init(jax.random.key(0), algorithm.hyperparams)
    zeros = jnp.zeros((4, 2))
    done = jnp.array([[0, 0], [1, 0], [0, 0], [0, 0]], bool)  # member 0's episode ends at step 1, member 1's never
    trajectory = Trajectory(obs=jnp.zeros((4, 2, 4)), action=jnp.array([[1, 1], [0, 1], [1, 1], [1, 1]]),
                            reward=zeros + 1, terminated=done, truncated=jnp.zeros((4, 2), bool), value=zeros,
                            log_prob=zeros, final_obs=jnp.zeros((4, 2, 4)), last_obs=jnp.zeros((2, 4)))
    _, metrics = algorithm.update(state, trajectory)
    # only member 0's two steps count (member 1's episode did not end, steps 2-3 of member 0 are its next episode's)
    np.testing.assert_array_equal(metrics["train_DiscreteActionEvents/action/substep_0/action"], [1, 1])
