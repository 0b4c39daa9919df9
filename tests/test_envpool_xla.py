"""envpool's jitted rollouts: the steps that only reset an env are marked and left out of the learner, each env's
episodes match envpool stepped from Python, and PPO trains from them."""

from __future__ import annotations

import functools
import importlib.util
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_trainer, run_cli
from maze_jax.algorithms.actor_critic import Experience, Trajectory, advantages_and_targets, loss
from maze_jax.algorithms.losses import Losses
from maze_jax.algorithms.metrics import action_statistics
from maze_jax.shell.collectors.envpool_xla import fits, rollout_program

HAS_ENVPOOL = importlib.util.find_spec("envpool") is not None
needs_envpool = pytest.mark.skipif(not HAS_ENVPOOL, reason="envpool is an optional extra: pip install '.[envpool]'")

LENGTHS = jnp.array([2, 3, 5, 4])  # the fake env's episode length per env


def countdown_step(handle, action):
    """A JAX env stepped as envpool steps its batch: obs [steps taken, env], reward 1 + action per step, the
    episode ends after LENGTHS[env] steps, and the next step only resets (reward 0, action ignored, first obs);
    answers in reverse env order. `handle` is the state: (steps taken, ended on the last step)."""
    taken, ended = handle
    taken = jnp.where(ended, 0, taken + 1)
    reward = jnp.where(ended, 0.0, 1.0 + action)
    done = ~ended & (taken == LENGTHS)
    obs = jnp.stack([taken.astype(jnp.float32), jnp.arange(4.0)], -1)
    reverse = lambda x: x[::-1]  # noqa: E731
    return (taken, done), tuple(map(reverse, (obs, reward, done, jnp.zeros(4, bool), jnp.arange(4))))


def explore(params, obs, key, memory):
    """Action 1 where the env's steps taken are odd: the experience records it, the reward shows it."""
    action = obs[:, 0].astype(jnp.int32) % 2
    return action, Experience(action, jnp.zeros(obs.shape[0]), jnp.zeros(obs.shape[0])), memory


def countdown_rollout(n_steps: int = 12):
    rollout = jax.jit(rollout_program(explore, countdown_step, lambda a: a, lambda o: o, 2, 2, n_steps))
    carry = ((jnp.zeros(4, jnp.int32), jnp.zeros(4, bool)), jnp.stack([jnp.zeros(4), jnp.arange(4.0)], -1),
             jnp.zeros(4, bool), jnp.zeros(4), jnp.zeros(4, jnp.int32))
    return rollout, carry


def test_a_rollout_marks_the_reset_steps_and_reports_each_episode_once():
    rollout, carry = countdown_rollout()
    carry, trajectory, (ended, returns, lengths, finite) = rollout(jnp.zeros(2), jax.random.split(jax.random.key(0)),
                                                                  carry)
    assert trajectory.obs.shape == (2, 12, 2, 2) and trajectory.valid.shape == (2, 12, 2)
    valid = np.asarray(trajectory.valid).swapaxes(0, 1).reshape(12, 4)  # (T, env)
    obs = np.asarray(trajectory.obs).swapaxes(0, 1).reshape(12, 4, 2)
    final = np.asarray(trajectory.final_obs).swapaxes(0, 1).reshape(12, 4, 2)
    terminated = np.asarray(trajectory.terminated).swapaxes(0, 1).reshape(12, 4)
    np.testing.assert_array_equal(obs[:, :, 1], np.broadcast_to(np.arange(4.0), (12, 4)))  # in env order
    for env, length in enumerate(np.asarray(LENGTHS)):
        period = length + 1  # an episode's steps, then its reset step
        np.testing.assert_array_equal(valid[:, env], np.arange(12) % period != length)
        np.testing.assert_array_equal(terminated[:, env], np.arange(12) % period == length - 1)
        np.testing.assert_array_equal(final[:-1, env], obs[1:, env])  # an episode's last observation: the next one
        ends = np.flatnonzero(np.asarray(ended)[:, env])
        np.testing.assert_array_equal(ends, np.flatnonzero(np.arange(12) % period == length - 1))
        # its return: 1 per step plus the actions (1 after an odd number of steps), over the valid steps alone
        assert np.asarray(returns)[ends, env].tolist() == [length + length // 2] * len(ends)
        assert np.asarray(lengths)[ends, env].tolist() == [length] * len(ends)
    np.testing.assert_array_equal(np.asarray(trajectory.last_obs).reshape(4, 2), np.asarray(carry[1]))
    assert np.asarray(finite).all()


def test_a_non_finite_reward_is_flagged_at_its_step():
    def spoiled(handle, action):  # env 2's reward is NaN on the 4th step of each of its episodes
        handle, (obs, reward, done, cut, ids) = countdown_step(handle, action)
        broken = (ids == 2) & (handle[0][ids] == 4)
        return handle, (obs, jnp.where(broken, jnp.nan, reward), done, cut, ids)

    rollout = jax.jit(rollout_program(explore, spoiled, lambda a: a, lambda o: o, 2, 2, 12))
    _, carry = countdown_rollout()
    finite = rollout(jnp.zeros(2), jax.random.split(jax.random.key(0)), carry)[2][3]
    np.testing.assert_array_equal(np.flatnonzero(~np.asarray(finite)), [3, 9])  # env 2 plays 5 steps, then resets


def test_the_next_rollout_starts_where_the_last_one_ended():
    whole, carry = countdown_rollout(12)
    halves, _ = countdown_rollout(6)
    keys = jax.random.split(jax.random.key(0))
    _, full, _ = whole(jnp.zeros(2), keys, carry)
    carry, first, _ = halves(jnp.zeros(2), keys, carry)
    _, second, _ = halves(jnp.zeros(2), keys, carry)
    for name in ("obs", "reward", "valid", "terminated"):
        joined = np.concatenate([getattr(first, name), getattr(second, name)], axis=1)
        np.testing.assert_array_equal(joined, getattr(full, name))


def test_a_masked_step_changes_no_loss_term_nor_advantage():
    """A minibatch with steps that are no transitions (garbage in every field) gives the loss, statistics and
    gradients of the minibatch without them; and such a step after an episode's end leaves the advantages of the
    steps before it as they were."""
    _, trainer = make_trainer(["env=cartpole", "algorithm=ppo"])
    hparams = trainer.algorithm.hyperparams
    params = trainer.algorithm.init(jax.random.key(0), hparams).params
    model = trainer.algorithm.update.keywords["model"]  # the ActorCritic the learner updates
    key = jax.random.split(jax.random.key(3), 6)
    real = {"obs": jax.random.normal(key[0], (10, 4)), "action": jax.random.randint(key[1], (10,), 0, 2),
            "log_prob": -jax.random.uniform(key[2], (10,)), "value": jax.random.normal(key[3], (10,)),
            "advantage": jax.random.normal(key[4], (10,)), "target": jax.random.normal(key[5], (10,))}
    garbage = {k: 50 + 9 * v[:3] for k, v in real.items()} | {"action": real["action"][:3]}
    mixed = {k: jnp.concatenate([real[k][:4], garbage[k], real[k][4:]]) for k in real}
    mixed["valid"] = (jnp.arange(13) < 4) | (jnp.arange(13) >= 7)
    grad = jax.grad(functools.partial(loss, model=model, losses=Losses(), sub_step_ids=None, n_sub_steps=0,
                                      ppo=True), has_aux=True)
    weights = {"policy": 1.0, "value": 0.5, "entropy": 0.01}
    expected, with_mask = grad(params, real, hparams, weights), grad(params, mixed, hparams, weights)
    jax.tree.map(functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6), with_mask, expected)

    # GAE: the reset step after the end at t = 2 (garbage reward and observation) changes no advantage before it
    def trajectory(reset_reward):
        reward = jnp.ones((6, 1)).at[3].set(reset_reward)
        return Trajectory(obs=jnp.ones((6, 1, 4)), action=jnp.zeros((6, 1), int), log_prob=jnp.zeros((6, 1)),
                          value=jnp.zeros((6, 1)), reward=reward, terminated=jnp.arange(6)[:, None] == 2,
                          truncated=jnp.zeros((6, 1), bool), final_obs=jnp.ones((6, 1, 4)),
                          last_obs=jnp.ones((1, 4)), valid=jnp.arange(6)[:, None] != 3)
    plain = advantages_and_targets(params, trajectory(0.0), hparams, model)[0]
    spoiled = advantages_and_targets(params, trajectory(1e6), hparams, model)[0]
    np.testing.assert_allclose(plain[:3], spoiled[:3])


def test_action_counts_leave_out_the_reset_steps():
    _, trainer = make_trainer(["env=cartpole", "algorithm=ppo"])
    dist = trainer.algorithm.policy.dist
    actions = jnp.array([[0, 1], [1, 1], [1, 0]])
    rows = action_statistics(dist, actions, valid=jnp.array([[True, True], [False, True], [True, False]]))
    np.testing.assert_array_equal(next(iter(rows.values())), [1, 3])


def test_jitted_rollouts_fit_feed_forward_ppo_and_a2c_on_envpool_only():
    if not HAS_ENVPOOL:
        pytest.skip("envpool is an optional extra: pip install '.[envpool]'")
    spec, ppo = make_trainer(["env=gym_env", "env.name=CartPole-v1", "env.backend=envpool", "algorithm=ppo"])
    assert fits(ppo.algorithm, spec)
    assert fits(make_trainer(["env=gym_env", "env.name=Pendulum-v1", "env.backend=envpool", "algorithm=a2c"])[1]
                .algorithm, make_trainer(["env=gym_env", "env.name=Pendulum-v1", "env.backend=envpool"])[0])
    for overrides in (["algorithm=sac"], ["algorithm=impala"], ["algorithm=es"],
                      ["algorithm=ppo", "model=vector_obs_rnn"], ["algorithm=ppo", "env.backend=gymnasium"]):
        spec, trainer = make_trainer(["env=gym_env", "env.name=CartPole-v1", "env.backend=envpool", *overrides])
        assert not fits(trainer.algorithm, spec), overrides


@needs_envpool
def test_each_envs_first_episode_is_the_one_envpool_plays_when_stepped_from_python():
    """Same seed, policy and keys: until an env's episode ends, the jitted rollout and the Python-stepped one see
    the same observations, take the same actions and get the same rewards (after it, envpool's reset step moves the
    jitted rollout's keys one step on)."""
    from maze_jax.shell.collectors.envpool_xla import EnvpoolRollouts
    from maze_jax.shell.collectors.host import RolloutCollector

    spec, trainer = make_trainer(["env=gym_env", "env.name=CartPole-v1", "env.backend=envpool", "algorithm=ppo",
                                  "runner.concurrency=4", "algorithm.n_rollout_steps=60", "algorithm.batch_size=40"])
    learner = trainer.algorithm.init(jax.random.key(0), trainer.algorithm.hyperparams)
    params, keys = jax.tree.map(lambda x: x[None], learner.params), jax.random.split(jax.random.key(5), 1)
    jitted = EnvpoolRollouts(trainer.algorithm, spec, 4, 60, 1, seed=7)
    python = RolloutCollector(trainer.algorithm, spec, 4, 60, 1, 7, "sync")
    try:
        (a, episodes, _, steps), (b, _, _, _) = jitted.collect(params, keys), python.collect(params, keys)
        again = EnvpoolRollouts(trainer.algorithm, spec, 4, 60, 1, seed=7)
        c = again.collect(params, keys)[0]
        again.close()
    finally:
        jitted.close()
        python.close()
    assert steps == 240 and jitted.env_steps == 240
    jax.tree.map(np.testing.assert_array_equal, a, c)  # a seed gives the same rollout
    ended = np.asarray(a.terminated | a.truncated)[0]
    assert ended.any(axis=0).all(), "every env ends an episode within 60 steps under a random policy"
    for env in range(4):
        end = int(np.argmax(ended[:, env]))
        for name in ("obs", "action", "log_prob", "reward", "terminated"):
            np.testing.assert_allclose(np.asarray(getattr(a, name))[0, :end + 1, env],
                                       np.asarray(getattr(b, name))[0, :end + 1, env], rtol=1e-6)
        np.testing.assert_allclose(np.asarray(a.obs)[0, end + 1, env], np.asarray(a.final_obs)[0, end, env])
        assert not np.asarray(a.valid)[0, end + 1, env] and np.asarray(a.valid)[0, :end + 1, env].all()
        first = [r for i, r, n in episodes if i == env][0]
        assert first == pytest.approx(float(np.asarray(b.reward)[0, :end + 1, env].sum()))


@needs_envpool
@pytest.mark.learning
def test_ppo_and_a2c_learn_cartpole_from_envpools_jitted_rollouts(tmp_path, cache_dir):
    """Maze's defaults on envpool's CartPole, from the command line: PPO solves it within 4 epochs of 40,000 steps,
    A2C passes an evaluation mean of 150 within 6."""
    for algorithm, epochs, expected in (("ppo", 4, "reached the reward threshold 475"), ("a2c", 6, None)):
        proc = run_cli(["env=gym_env", "env.name=CartPole-v1", "env.backend=envpool", f"algorithm={algorithm}",
                        f"algorithm.n_epochs={epochs}", "seeding.agent_base_seed=0", "seeding.env_base_seed=0",
                        f"log_base_dir={tmp_path / algorithm}"], tmp_path, cache_dir)
        assert proc.returncode == 0, proc.stderr[-3000:]
        if expected:
            assert expected in proc.stdout, proc.stdout[-3000:]
        else:
            best = max(float(m) for m in re.findall(r"new overall best model (-?[\d.]+)", proc.stdout))
            assert best >= 150, proc.stdout[-3000:]
