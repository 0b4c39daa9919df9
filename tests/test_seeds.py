"""The seed axis is added and removed in one place (`collectors.seeds.with_seeds`) for every collector: a run's
state has a leading seed axis with several seeds and none with one, whether its collector vmaps one seed's trainer
(JAX envs) or steps every seed's envs as one batch (Python envs)."""

import jax
import jax.numpy as jnp
import numpy as np

from maze_jax.collectors import Trainer, TrainState
from maze_jax.collectors.seeds import drop_seed_axis, seed_keys, with_seeds


def host_like_trainer(seen: list, returned: list) -> Trainer:
    """A seed-batched trainer as the Python-env collectors build them; `seen` records the states it is given,
    `returned` those it gives back."""
    def init(agent_keys, env_key, hyperparams=None):
        return TrainState({"w": jax.vmap(lambda k: jax.random.uniform(k, (2,)))(agent_keys)}, env_key)

    def train_epoch(state, should_stop=lambda: False):
        seen.append(state)
        if should_stop():
            return None
        learner = {"w": state.learner["w"] + 1}
        returned.append(TrainState(learner, state.envs))
        return returned[-1], {"per_seed": learner["w"].sum(-1), "pooled": np.float32(7.0)}

    def evaluate(state, key, should_stop=lambda: False):
        return {"returns": state.learner["w"][:, :1] * 10}

    return Trainer(None, init, train_epoch, evaluate, eval_episodes=1, on_host=True)


def test_one_seed_of_a_seed_batched_trainer_has_no_seed_axis_and_the_trainer_gets_its_own_state_back():
    seen, returned = [], []
    trainer = with_seeds(host_like_trainer(seen, returned), 1)
    key = jax.random.key(0)
    state = trainer.init(key, key)
    assert state.learner["w"].shape == (2,)
    np.testing.assert_array_equal(state.learner["w"], jax.random.uniform(key, (2,)))  # the key as it is
    after, metrics = trainer.train_epoch(state)
    assert after.learner["w"].shape == (2,) and metrics["per_seed"].shape == () and metrics["pooled"] == 7.0
    again, _ = trainer.train_epoch(after)
    assert seen[0].learner["w"].shape == (1, 2)
    assert seen[1] is returned[0]  # the state it returned, as the very object: its envs keep running
    trainer.train_epoch(after)  # an older state (a restore, say) comes as a new object: the envs restart
    assert seen[2] is not returned[0] and seen[2] is not returned[1]
    np.testing.assert_array_equal(seen[2].learner["w"], returned[0].learner["w"])
    assert trainer.evaluate(after, key)["returns"].shape == (1,)
    assert trainer.train_epoch(after, lambda: True) is None and trainer.n_seeds == 1


def test_several_seeds_keep_the_axis_and_draw_a_key_each():
    trainer = with_seeds(host_like_trainer([], []), 3)
    key = jax.random.key(1)
    state = trainer.init(key, key)
    assert state.learner["w"].shape == (3, 2) and trainer.n_seeds == 3
    np.testing.assert_array_equal(state.learner["w"][2], jax.random.uniform(seed_keys(key, 3)[2], (2,)))
    after, metrics = trainer.train_epoch(state)
    assert metrics["per_seed"].shape == (3,) and after.learner["w"].shape == (3, 2)


def test_one_seeds_trainer_of_a_jax_env_is_vmapped_for_several():
    def init(agent_key, env_key, hyperparams=None):
        return TrainState(jax.random.uniform(agent_key, (2,)), env_key)

    one = Trainer(None, init, lambda s: (s.replace(learner=s.learner * 2), {"m": s.learner.sum()}),
                  lambda s, k: s.learner, eval_episodes=1)
    assert with_seeds(one, 1) is one
    four = with_seeds(one, 4)
    state = four.init(jax.random.key(2), jax.random.key(3))
    after, metrics = four.train_epoch(state)
    assert after.learner.shape == (4, 2) and metrics["m"].shape == (4,) and four.n_seeds == 4
    assert len({float(x) for x in jnp.ravel(state.learner)}) == 8  # independent seeds


def test_drop_seed_axis_leaves_pooled_statistics():
    dropped = drop_seed_axis({"a": np.ones((1, 3)), "b": np.float32(2.0), "c": 5})
    assert dropped["a"].shape == (3,) and dropped["b"] == 2.0 and dropped["c"] == 5
