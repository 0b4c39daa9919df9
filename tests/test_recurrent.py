"""`model=vector_obs_rnn`: the recurrent cell, memories carried through rollouts and set to zeros at episode ends
(JAX and Python envs, ES members), the learner replaying sequences from the memories the actors had, as they were
acted, RunContext's memory, bit-for-bit resume, clear errors, and learning a task that needs memory."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import Countdown, init_state, make_trainer, run_cli
from maze_jax.algorithms.actor_critic import (ActorCriticConfig, Trajectory, critic_values, episode_starts, forward,
                                             sequences)
from maze_jax.collectors.jax_envs import collect_rollout
from maze_jax.config import ConfigError
from maze_jax.envs import EpisodeStats, as_env_spec
from maze_jax.envs.episodes import EnvBatch, run_steps
from maze_jax.models import RecurrentPolicy

RNN = ["model=vector_obs_rnn", "model.hidden_units=[16]", "model.memory_units=8"]
MEMORY_CHAIN = ["env=gymnax", "env.name=MemoryChain-bsuite"]


@pytest.mark.parametrize("cell, memory_shapes", [("gru", [(8,)]), ("lstm", [(8,), (8,)])])
def test_the_cell_carries_a_memory_that_changes_the_outputs(cell, memory_shapes):
    net = RecurrentPolicy(n_outputs=3, hidden_units=(16,), memory_units=8, cell=cell)
    memory = net.initial_memory()
    assert [m.shape for m in jax.tree.leaves(memory)] == memory_shapes
    assert all(float(jnp.abs(m).sum()) == 0 for m in jax.tree.leaves(memory))
    obs = jnp.array([0.5, -1.0])
    params = net.init(jax.random.key(0), obs, memory)
    out, after = net.apply(params, obs, memory)
    assert out.shape == (3,) and not all(float(jnp.abs(m).sum()) == 0 for m in jax.tree.leaves(after))
    again, _ = net.apply(params, obs, after)  # same observation, another memory: other outputs
    assert not np.allclose(out, again)
    with pytest.raises(ConfigError, match="model.cell='rnn' is unknown"):
        RecurrentPolicy(n_outputs=3, cell="rnn").initial_memory()


def test_every_env_memory_starts_from_zeros_at_its_episodes_start():
    # a "memory" that counts the steps it has seen: after any number of steps it equals the running episode length
    spec = as_env_spec(Countdown(3))
    envs = EnvBatch.reset(spec.env, spec.params, jax.random.key(0), 4, memory=jnp.zeros(4, jnp.int32))

    def act(obs, key, memory):
        return jnp.zeros(4, jnp.int32), None, memory + 1

    for n_steps in (1, 2, 3, 5, 7):
        after, stats, _ = run_steps(spec.env, spec.params, act, envs, EpisodeStats.zeros(4, 3), jax.random.key(1),
                                    jax.random.key(2), n_steps)
        np.testing.assert_array_equal(after.memory, after.episode_length)
        assert after.memory[0] == n_steps % 3


def replayed(trainer, state, trajectory: Trajectory, length: int, memory=None):
    """The log-probabilities and values the learner computes for the rollout's steps, replaying sequences of
    `length` steps from the memories the actors had (or from `memory`), each beside the actors' own."""
    model = trainer.algorithm.update.keywords["model"]
    acted = {"obs": trajectory.obs, "action": trajectory.action, "log_prob": trajectory.log_prob,
             "value": trajectory.value}
    batch = sequences(trajectory if memory is None else trajectory._replace(memory=memory), acted, length)
    out, values, samples = forward(model, state.learner.params, batch)
    log_prob = model.policy.dist.log_prob(out, samples["action"])
    return (log_prob, values), (samples["log_prob"], samples["value"])


def rnn_rollouts(trainer, spec, n_rollouts: int = 2):
    """`n_rollouts` 12-step rollouts of 3 envs under the fresh recurrent learner (each continuing the one before)."""
    state = init_state(trainer)
    envs = EnvBatch.reset(spec.env, spec.params, jax.random.key(1), 3, memory=trainer.algorithm.initial_memory(3))
    trajectories = []
    for rollout in range(n_rollouts):  # the second starts mid-episode, from the memory the first left
        envs, _, trajectory = collect_rollout(trainer.algorithm.explore, state.learner.params, spec, envs,
                                              EpisodeStats.zeros(3, 5), jax.random.key(2 + rollout),
                                              jax.random.key(3 + rollout), 12)
        trajectories.append(trajectory)
    return state, trajectories


def short_cartpole():
    """CartPole truncated at 5 steps: episodes of 12-step rollouts end inside them and carry across them."""
    spec = as_env_spec("CartPole-v1")
    return spec._replace(params=spec.params.replace(max_steps_in_episode=5))


# lengths 1 and 12 (single steps, whole rollouts) in the slow tier: length 3 already cuts episodes inside and across
# sequences, and the fast tier stays under 8 minutes
@pytest.mark.parametrize("length, cell", [pytest.param(1, "gru", marks=pytest.mark.slow), (3, "gru"),
                                          pytest.param(12, "gru", marks=pytest.mark.slow), (3, "lstm")])
def test_the_learner_replays_sequences_from_the_actors_memories_exactly_as_they_were_acted(length, cell):
    spec = short_cartpole()
    _, trainer = make_trainer(["algorithm=ppo", "runner.concurrency=3", "algorithm.n_rollout_steps=12",
                               "algorithm.batch_size=12", f"algorithm.sequence_length={length}", *RNN,
                               f"model.cell={cell}"], spec)
    assert trainer.algorithm.config.sequence_steps == length
    state, trajectories = rnn_rollouts(trainer, spec)
    for trajectory in trajectories:
        assert trajectory.truncated.any()
        assert jax.tree.leaves(trajectory.memory)[0].shape == (12, 3, 8)  # the memory each step was acted with
        learner, actors = replayed(trainer, state, trajectory, length)
        np.testing.assert_allclose(learner, actors, rtol=1e-5, atol=1e-6)
    # sequences replayed from zeros instead of the actors' memories, or without the resets at episode ends,
    # would differ: the test can tell
    model = trainer.algorithm.update.keywords["model"]
    if length > 1:
        zeros = jax.tree.map(jnp.zeros_like, trajectory.memory)
        learner, actors = replayed(trainer, state, trajectory, length, memory=zeros)
        assert not np.allclose(learner[1], actors[1], atol=1e-4)
    no_resets = model.unroll(state.learner.params, trajectory.obs, jnp.zeros_like(trajectory.truncated),
                             jax.tree.map(lambda m: m[0], trajectory.memory))[1]
    assert not np.allclose(no_resets, trajectory.value, atol=1e-4)
    # GAE's values come from the stored memories at once; the bootstrap of a truncated episode values its final
    # observation with the memory after its last step, as a step-by-step replay does
    values, final_values, last_value = critic_values(state.learner.params, trajectory, model)
    np.testing.assert_allclose(values, trajectory.value, rtol=1e-5, atol=1e-6)  # the actors' critic was the same
    _, unrolled, after = model.unroll(state.learner.params, trajectory.obs, episode_starts(trajectory),
                                      jax.tree.map(lambda m: m[0], trajectory.memory))
    flat = lambda x: x.reshape((-1,) + x.shape[2:])  # noqa: E731
    expected = model.step(state.learner.params, jax.tree.map(flat, trajectory.final_obs),
                          jax.tree.map(flat, after))[1].reshape(12, 3)
    np.testing.assert_allclose(final_values, expected, rtol=1e-5, atol=1e-6)
    assert last_value.shape == (3,) and np.isfinite(last_value).all()


def test_the_default_sequence_is_the_longest_up_to_16_that_divides_the_rollout_and_minibatch():
    assert ActorCriticConfig(n_rollout_steps=100, batch_size=100).sequence_steps == 10  # Maze's defaults
    assert ActorCriticConfig(n_rollout_steps=128, batch_size=512).sequence_steps == 16
    assert ActorCriticConfig(n_rollout_steps=24, batch_size=96).sequence_steps == 12
    assert ActorCriticConfig(n_rollout_steps=24, batch_size=36).sequence_steps == 12
    assert ActorCriticConfig(n_rollout_steps=24, batch_size=20).sequence_steps == 4
    assert ActorCriticConfig(ppo=False, n_rollout_steps=7).sequence_steps == 7  # A2C: one minibatch
    assert ActorCriticConfig(n_rollout_steps=64, batch_size=256, sequence_length=64).sequence_steps == 64


@pytest.mark.cli
def test_ppo_a2c_and_es_train_the_recurrent_model_on_a_jax_env():
    for algorithm, sizes in (("ppo", ["algorithm.batch_size=16"]), ("a2c", [])):
        _, trainer = make_trainer([f"algorithm={algorithm}", "runner.concurrency=4", "algorithm.n_rollout_steps=8",
                                   "algorithm.epoch_length=2", *sizes, *RNN])
        state, metrics = jax.jit(trainer.train_epoch)(init_state(trainer))
        assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 2 * 8 * 4
        assert np.isfinite(float(metrics["policy_loss"]))
        params = state.learner.params
        assert "memory" in params["policy"]["params"] and "memory" in params["critic"]["params"]
    stats = jax.jit(trainer.evaluate)(state, jax.random.key(0))
    assert int(stats.count.sum()) == trainer.eval_episodes
    _, trainer = make_trainer(["algorithm=es", "algorithm.n_rollouts_per_update=8", "algorithm.max_steps=50", *RNN])
    state, metrics = jax.jit(trainer.train_epoch)(init_state(trainer))
    assert "memory" in state.learner.params["policy"]["params"]
    assert np.isfinite(float(metrics["train_BaseEnvEvents/reward/mean"]))


@pytest.mark.cli
def test_python_envs_carry_the_memory_through_host_rollouts_es_and_evaluation():
    base = ["env=gymnasium", "env.name=CartPole-v1", "env.max_episode_steps=6", "runner=dev", *RNN]
    spec, trainer = make_trainer([*base, "algorithm=ppo", "algorithm.epoch_length=1", "algorithm.n_rollout_steps=16",
                               "algorithm.batch_size=16", "runner.concurrency=2"])
    try:
        state, metrics = trainer.train_epoch(init_state(trainer))
        assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 16 * 2
        from maze_jax.shell.collectors.host import RolloutCollector
        collector = RolloutCollector(trainer.algorithm, spec, 2, 16, 1, 3, "sync")
        params = jax.tree.map(lambda x: x[None], state.learner.params)
        for _ in range(2):  # the second rollout continues the first's episodes and memories
            trajectory, _, _, _ = collector.collect(params, jax.random.key(4)[None])
            one = jax.tree.map(lambda x: x[0], trajectory)
            assert one.truncated.any()
            learner, actors = replayed(trainer, state, one, trainer.algorithm.config.sequence_steps)
            np.testing.assert_allclose(learner, actors, rtol=1e-5, atol=1e-6)
        collector.close()
        stats = trainer.evaluate(state, jax.random.key(0))
        assert int(np.sum(stats.count)) == trainer.eval_episodes
    finally:
        trainer.close()
    _, trainer = make_trainer([*base, "algorithm=es", "algorithm.n_rollouts_per_update=4"])
    try:
        _, metrics = trainer.train_epoch(init_state(trainer))
        assert np.isfinite(float(metrics["train_BaseEnvEvents/reward/mean"]))
    finally:
        trainer.close()


def test_sequences_that_cannot_split_into_minibatches_and_structured_envs_are_one_line():
    with pytest.raises(ConfigError, match="sequence_length=10: .*must divide algorithm.n_rollout_steps=20 and "
                                          "algorithm.batch_size=16"):
        make_trainer(["algorithm=ppo", "runner.concurrency=4", "algorithm.n_rollout_steps=20",
                      "algorithm.batch_size=16", "algorithm.sequence_length=10", *RNN])
    with pytest.raises(ConfigError, match="sequence_length=8: .*must divide algorithm.n_rollout_steps=12$"):
        make_trainer(["algorithm=a2c", "runner.concurrency=4", "algorithm.n_rollout_steps=12",
                      "algorithm.sequence_length=8", *RNN])
    with pytest.raises(ConfigError, match="not available for structured envs"):
        make_trainer(["env=tutorial_cutting_2d_struct", "algorithm=ppo", "model=vector_obs_rnn",
                      "critic=separate"])


@pytest.mark.cli
def test_run_context_remembers_until_reset_and_resumes_bit_for_bit(tmp_path, cache_dir):
    from maze_jax.api import RunContext

    overrides = {"runner.concurrency": 4, "algorithm.n_rollout_steps": 8, "algorithm.batch_size": 16,
                 "algorithm.epoch_length": 2, "model.hidden_units": [16], "model.memory_units": 8,
                 "runner.stop_when_solved": False, "seeding.env_base_seed": 1, "seeding.agent_base_seed": 2,
                 "compilation_cache_dir": cache_dir}
    quiet = lambda *a, **k: None  # noqa: E731
    twice = RunContext(env="cartpole", algorithm="ppo", model="vector_obs_rnn", runner="dev", overrides=overrides,
                       run_dir=str(tmp_path / "twice"), echo=quiet)
    twice.train(n_epochs=1)
    twice.train(n_epochs=1)  # resumes from the run directory: learner, envs mid-episode and their memories
    once = RunContext(env="cartpole", algorithm="ppo", model="vector_obs_rnn", runner="dev", overrides=overrides,
                      run_dir=str(tmp_path / "once"), echo=quiet)
    once.train(n_epochs=2)
    a, b = twice.result.state, once.result.state
    for x, y in zip(jax.tree.leaves((a.learner.params, a.envs[0])), jax.tree.leaves((b.learner.params, b.envs[0]))):
        np.testing.assert_array_equal(x, y)  # parameters, envs mid-episode and their memories
    assert float(jnp.abs(a.envs[0].memory["policy"]).sum()) > 0
    policy = once.policy
    obs = np.array([0.0, 0.1, 0.02, -0.1], np.float32)
    once.reset()
    once.compute_action(obs)
    first_memory = policy._memory[1]
    once.compute_action(obs)
    assert not np.allclose(jax.tree.leaves(first_memory)[0], jax.tree.leaves(policy._memory[1])[0])
    once.reset()
    once.compute_action(obs)
    np.testing.assert_array_equal(jax.tree.leaves(policy._memory[1])[0], jax.tree.leaves(first_memory)[0])


@pytest.mark.learning
def test_ppo_with_memory_solves_a_task_that_needs_it_then_resumes_and_rolls_out(tmp_path, cache_dir):
    # MemoryChain shows a bit only at an episode's first step and pays +1 for naming it at the last, -1 otherwise:
    # a policy without memory averages 0
    from test_rollout import table_value

    train = [*MEMORY_CHAIN, "algorithm=ppo", "model=vector_obs_rnn", "algorithm.n_epochs=3",
             "algorithm.epoch_length=10", "algorithm.n_rollout_steps=24", "algorithm.batch_size=96",
             "runner.concurrency=32", "algorithm.lr=0.001",
             "algorithm.entropy_coef=0.01", "seeding.env_base_seed=3", "seeding.agent_base_seed=4"]
    proc = run_cli([*train, f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert table_value(proc.stdout, "final", "mean") >= 0.9
    run_dir = next((tmp_path / "a").glob("*/*"))
    resumed = run_cli([f"input_dir={run_dir}", "algorithm.n_epochs=4", f"log_base_dir={tmp_path / 'b'}"], tmp_path,
                      cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed {run_dir} at epoch 3" in resumed.stdout
    rollout = run_cli([f"input_dir={run_dir}", "runner.n_episodes=20", f"log_base_dir={tmp_path / 'c'}"], tmp_path,
                      cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr
    assert table_value(rollout.stdout, "rollout", "mean") >= 0.9


def test_the_network_picture_shows_a_cell_as_one_layer_between_its_neighbours():
    from maze_jax.shell.pictures import layers

    for cell in ("gru", "lstm"):
        net = RecurrentPolicy(n_outputs=2, hidden_units=(32,), memory_units=16, cell=cell)
        params = net.init(jax.random.key(0), jnp.zeros(4), net.initial_memory())
        assert layers(params) == [("hidden_0", (4, 32)), ("memory", (32, 16)), ("output", (16, 2))]
