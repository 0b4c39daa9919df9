"""IMPALA: V-trace against its definition, the correction of lagging actors, and learning on a Python env."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.algorithms.impala import ImpalaConfig, vtrace
from maze_jax.envs import make_env
from maze_jax.research import make_train
from maze_jax.shell.settings import HostSettings, LoopSettings, RunSettings


def brute_force_vtrace(values, bootstrap, rewards, discounts, log_rhos, clip_rho, clip_pg_rho):
    """The paper's double sum, written out: vs_t = V_t + sum_s (prod_{i<s} gamma_i c_i) rho_s delta_s."""
    rhos = np.exp(log_rhos)
    T = len(values)
    values_next = np.concatenate([values[1:], bootstrap[None]])
    vs = np.array(values, np.float64)
    for t in range(T):
        for s in range(t, T):
            weight = np.prod([discounts[i] * np.minimum(1.0, rhos[i]) for i in range(t, s)], axis=0) if s > t else 1.0
            vs[t] = vs[t] + weight * np.minimum(clip_rho, rhos[s]) * (rewards[s] + discounts[s] * values_next[s]
                                                                    - values[s])
    vs_next = np.concatenate([vs[1:], bootstrap[None]])
    return vs, np.minimum(clip_pg_rho, rhos) * (rewards + discounts * vs_next - values)


@pytest.mark.parametrize("clip_rho, clip_pg_rho", [(3.7, 2.2), (np.inf, np.inf), (1.0, 1.0)])
def test_vtrace_matches_the_double_sum_of_its_definition(clip_rho, clip_pg_rho):
    rng = np.random.default_rng(0)
    T, B = 5, 3
    values, rewards = rng.normal(size=(T, B)), rng.normal(size=(T, B))
    bootstrap, log_rhos = rng.normal(size=B), rng.normal(size=(T, B))
    discounts = np.where(rng.random((T, B)) < 0.2, 0.0, 0.9 / (np.arange(B) + 1))
    expected = brute_force_vtrace(values, bootstrap, rewards, discounts, log_rhos, clip_rho, clip_pg_rho)
    got = vtrace(*(jnp.asarray(x, jnp.float32) for x in (values, bootstrap, rewards, discounts, log_rhos)),
                 clip_rho, clip_pg_rho)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(np.asarray(g), e, rtol=1e-4, atol=1e-5)


def test_on_policy_vtrace_is_the_n_step_return():
    T, B = 4, 1
    values, rewards = jnp.zeros((T, B)), jnp.ones((T, B))
    vs, advantages = vtrace(values, jnp.full(B, 10.0), rewards, jnp.full((T, B), 0.5), jnp.zeros((T, B)), 1.0, 1.0)
    assert float(vs[0, 0]) == pytest.approx(1 + 0.5 + 0.25 + 0.125 + 0.0625 * 10)
    assert float(advantages[-1, 0]) == pytest.approx(1 + 0.5 * 10)


def test_lagging_actors_are_corrected_on_the_host_collector():
    """With runner.policy_lag=1 the actors act one update behind: the importance weights differ from 1."""
    config = ImpalaConfig(n_envs=4, n_rollout_steps=16, epoch_length=4, n_epochs=2, lr=0.01)
    settings = RunSettings(algorithm=config, loop=LoopSettings(), host=HostSettings(policy_lag=1),
                           model={"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [16]})
    spec = make_env("CartPole-v1", backend="gymnasium")
    _, metrics = make_train(settings, spec, compilation_cache=None)(jax.random.key(0))
    weights = np.asarray(metrics["importance_weight"])
    assert np.all(np.isfinite(weights)) and not np.allclose(weights, 1.0, atol=1e-6)


@pytest.mark.learning
def test_impala_learns_cartpole_on_the_host_collector_within_a_bounded_budget():
    config = ImpalaConfig(n_envs=8, n_rollout_steps=100, epoch_length=25, n_epochs=8, n_eval_episodes=8)
    settings = RunSettings(algorithm=config, loop=LoopSettings(),
                           model={"_target_": "maze_jax.models.FlattenConcatPolicy", "hidden_units": [64, 64]})
    spec = make_env("CartPole-v1", backend="gymnasium")
    _, metrics = make_train(settings, spec, eval_episodes=8, compilation_cache=None)(jax.random.key(0))
    assert np.max(np.asarray(metrics["eval_BaseEnvEvents/reward/mean"])) >= 400
