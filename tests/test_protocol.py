"""One algorithm protocol: learners defined here alone train through the JAX-env and the host collectors, untouched:
a learner of rollouts (one-step Q-learning), as PPO, A2C, SAC and IMPALA are, and a learner of fresh episodes
(antithetic random search over a linear policy), as ES is."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import struct

from maze_jax.algorithms import Algorithm, hyperparams_struct, traced
from maze_jax.algorithms.actor_critic import Experience
from maze_jax.envs import make_env
from maze_jax.models import Categorical, FlattenConcatPolicy, Policy
from maze_jax.shell.assembly import build_trainer


@dataclasses.dataclass(frozen=True)
class QConfig:
    n_envs: int = 8
    n_rollout_steps: int = 16
    epoch_length: int = 20
    n_eval_episodes: int = 4
    deterministic_eval: bool = True
    n_epochs: int = 5
    patience: int = 0
    mesh: object = None
    lr: float = traced(0.01)
    gamma: float = traced(0.9)
    epsilon: float = traced(0.2)
    name = "one_step_q"


QHyperparams = hyperparams_struct(QConfig, "QHyperparams")


class QState(struct.PyTreeNode):
    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jax.Array
    hparams: QHyperparams


def make_q_learner(config: QConfig, n_actions: int, obs_example) -> Algorithm:
    """Q-values are the policy's logits: its mode is the greedy action."""
    policy = Policy(FlattenConcatPolicy(n_actions, (32,), "relu"), Categorical(n_actions))
    optimizer = optax.adam(config.lr)

    def init(key, hparams):
        params = {"policy": policy.init(key, obs_example)}
        return QState(params, optimizer.init(params), key, jnp.int32(0), hparams)

    def explore(params, obs, key, memory=()):
        q = policy.outputs(params["policy"], obs)
        explore_key, action_key = jax.random.split(key)
        random = jax.random.randint(action_key, q.shape[:1], 0, n_actions)
        greedy = jnp.argmax(q, -1)
        action = jnp.where(jax.random.uniform(explore_key, q.shape[:1]) < config.epsilon, random, greedy)
        zeros = jnp.zeros(q.shape[:1])
        return action, Experience(action, zeros, zeros), memory

    def update(state, trajectory):
        def loss(params):
            q = jax.vmap(lambda o: policy.outputs(params["policy"], o))(trajectory.obs)
            taken = jnp.take_along_axis(q, trajectory.action[..., None], -1)[..., 0]
            next_q = jax.vmap(lambda o: policy.outputs(params["policy"], o))(trajectory.final_obs).max(-1)
            target = trajectory.reward + state.hparams.gamma * (1.0 - trajectory.terminated) * next_q
            return jnp.mean((taken - jax.lax.stop_gradient(target)) ** 2)

        value, grads = jax.value_and_grad(loss)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state)
        return (state.replace(params=optax.apply_updates(state.params, updates), opt_state=opt_state,
                              step=state.step + 1), {"td_loss": value})

    return Algorithm(name=config.name, config=config, policy=policy, hyperparams=QHyperparams.of(config), init=init,
                     update=update, explore=explore)


@pytest.mark.parametrize("backend", ["gymnax", "gymnasium"])
def test_a_learner_defined_in_a_test_trains_through_the_jax_and_host_collectors(backend):
    spec = make_env("CartPole-v1", backend=backend)
    assert spec.is_python == (backend == "gymnasium")
    algorithm = make_q_learner(QConfig(), 2, spec.observation_example())
    trainer = build_trainer(algorithm, spec)
    state = trainer.init(jax.random.key(0), jax.random.key(1))
    epoch = trainer.train_epoch if trainer.on_host else jax.jit(trainer.train_epoch)
    losses, lengths = [], []
    try:
        for _ in range(QConfig.n_epochs):
            state, metrics = epoch(state)
            losses.append(float(np.mean(metrics["td_loss"])))
            lengths.append(float(np.mean(metrics["train_BaseEnvEvents/reward/mean_step_count"])))
        played = trainer.evaluate(state, jax.random.key(2))
    finally:
        trainer.close()
    assert np.all(np.isfinite(losses)) and int(np.asarray(state.learner.step)) == 5 * QConfig.epoch_length
    assert np.asarray(played.count).sum() >= QConfig.n_eval_episodes
    assert lengths[-1] > lengths[0]  # it learns: CartPole's episodes grow longer


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    n_envs: int = 16  # the population: 8 antithetic pairs
    n_rollout_steps: int = 0
    epoch_length: int = 1
    n_eval_episodes: int = 4
    deterministic_eval: bool = True
    n_epochs: int = 8
    patience: int = 0
    mesh: object = None
    step_size: float = traced(0.05)
    noise: float = traced(0.1)
    name = "random_search"


SearchHyperparams = hyperparams_struct(SearchConfig, "SearchHyperparams")


class SearchState(struct.PyTreeNode):
    params: dict
    key: jax.Array
    step: jax.Array
    hparams: SearchHyperparams


def make_random_search(config: SearchConfig, obs_size: int, n_actions: int) -> Algorithm:
    """A linear policy's weights moved along the antithetic perturbations, weighted by their return differences."""
    policy = Policy(FlattenConcatPolicy(n_actions, (), "tanh"), Categorical(n_actions))
    half = config.n_envs // 2

    def init(key, hparams):
        params = {"policy": policy.init(key, jnp.zeros(obs_size))}
        return SearchState(jax.tree.map(jnp.zeros_like, params), key, jnp.int32(0), hparams)

    def perturbations(state):
        leaves, tree = jax.tree.flatten(state.params)
        keys = jax.random.split(state.key, len(leaves))
        return jax.tree.unflatten(tree, [jax.random.normal(k, (half,) + x.shape) for k, x in zip(keys, leaves)])

    def acting(state):  # members i and i + half: the pair params +- noise * e_i
        return jax.tree.map(lambda p, e: jnp.concatenate([p + state.hparams.noise * e, p - state.hparams.noise * e]),
                            state.params, perturbations(state))["policy"]

    def explore(members, obs, key, memory=()):
        action = jnp.argmax(jax.vmap(lambda m, o: policy.outputs(m, o[None])[0])(members, obs), -1)
        zeros = jnp.zeros(action.shape)
        return action, Experience(action, zeros, zeros), memory

    def update(state, trajectory):
        done = trajectory.terminated | trajectory.truncated
        first = (jnp.cumsum(done, 0) - done) == 0  # the steps of each env's first episode
        returns = jnp.where(first, trajectory.reward, 0.0).sum(0)
        weights = (returns[:half] - returns[half:]) / (returns.std() + 1e-6)
        step = jax.tree.map(lambda e: jnp.tensordot(weights, e, 1) / half, perturbations(state))
        params = jax.tree.map(lambda p, g: p + state.hparams.step_size * g, state.params, step)
        return state.replace(params=params, key=jax.random.split(state.key)[0], step=state.step + 1), \
            {"mean_return": returns.mean()}

    return Algorithm(name=config.name, config=config, policy=policy, hyperparams=SearchHyperparams.of(config),
                     init=init, update=update, explore=explore, acting=acting, fresh_episodes=True)


@pytest.mark.parametrize("backend", ["gymnax", "gymnasium"])
def test_a_learner_of_fresh_episodes_defined_in_a_test_trains_through_both_collectors(backend):
    spec = make_env("CartPole-v1", backend=backend)
    algorithm = make_random_search(SearchConfig(), 4, 2)
    trainer = build_trainer(algorithm, spec)
    state = trainer.init(jax.random.key(0), jax.random.key(1))
    epoch = trainer.train_epoch if trainer.on_host else jax.jit(trainer.train_epoch)
    means = []
    try:
        for _ in range(SearchConfig.n_epochs):
            state, metrics = epoch(state)
            means.append(float(np.mean(metrics["train_BaseEnvEvents/reward/mean"])))
            if trainer.on_host:  # one episode per member, every step of them counted
                assert int(np.sum(metrics["train_BaseEnvEvents/reward/episode_count"])) == SearchConfig.n_envs
    finally:
        trainer.close()
    assert int(np.asarray(state.learner.step)) == SearchConfig.n_epochs
    assert max(means[-3:]) > 2 * means[0]  # it learns: CartPole's episodes grow longer
