"""A whole ES training state (parameters, Adam state, typed RNG key, counters) survives an Orbax round trip."""

import jax
import numpy as np
import pytest

from conftest import init_state, make_trainer
from maze_jax.config import ConfigError
from maze_jax.shell.checkpoints import CheckpointDir
from maze_jax.shell.resume import read_first_usable


def small_trainer():
    return make_trainer(["env=cartpole", "algorithm.n_rollouts_per_update=4", "algorithm.max_steps=20",
                         "model.hidden_units=[8]", "runner.n_eval_rollouts=2"])[1]


def test_state_round_trip_is_exact(tmp_path):
    trainer = small_trainer()
    epoch = jax.jit(trainer.train_epoch)
    state, _ = epoch(init_state(trainer, 7))  # non-trivial Adam moments
    store = CheckpointDir(str(tmp_path / "ck"))
    store.save(3, state, {"epoch": 3, "best_score": 12.5})
    template = init_state(trainer, 0)
    restored, meta = CheckpointDir(str(tmp_path / "ck"), read_only=True).restore(template)
    assert meta == {"epoch": 3, "best_score": 12.5}
    assert jax.dtypes.issubdtype(restored.learner.key.dtype, jax.dtypes.prng_key)
    flat = lambda s: jax.tree.leaves(jax.tree.map(
        lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x, s))
    for a, b in zip(flat(state), flat(restored), strict=True):
        np.testing.assert_array_equal(a, b)
    # the restored state trains on identically
    for a, b in zip(flat(epoch(state)[0]), flat(epoch(restored)[0]), strict=True):
        np.testing.assert_array_equal(a, b)


def test_missing_or_empty_checkpoint_dirs_are_config_errors(tmp_path):
    read = lambda store, step: None  # noqa: E731
    with pytest.raises(ConfigError, match="does not exist"):
        read_first_usable(str(tmp_path / "nope"), read)
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="holds no usable checkpoint"):
        read_first_usable(str(tmp_path / "run"), read)


def test_a_state_of_another_model_is_named_by_what_differs(tmp_path):
    store = CheckpointDir(str(tmp_path / "ck"))
    store.save(1, {"params": {"a": np.zeros(3), "b": np.zeros((2, 2))}, "step": np.int32(1)}, {"epoch": 1})
    reading = CheckpointDir(str(tmp_path / "ck"), read_only=True)
    other_names = {"params": {"a": np.zeros(3), "c": np.zeros((2, 2))}, "step": np.int32(0)}
    with pytest.raises(ConfigError, match="not this model's state: this model has params/c; the checkpoint has "
                                          "params/b$"):
        reading.restore(other_names)
    other_shape = {"params": {"a": np.zeros(4), "b": np.zeros((2, 2))}, "step": np.int32(0)}
    with pytest.raises(ConfigError, match=r"params/a is \(3,\) in the checkpoint, \(4,\) in this model"):
        reading.restore(other_shape)


def test_networks_carried_into_another_model_name_what_differs():
    from maze_jax.shell.checkpoints import fit_arrays

    template = {"params": {"Dense_0": {"kernel": np.zeros((4, 8), np.float32)}}}
    fitted = fit_arrays(template, {"params": {"Dense_0": {"kernel": np.ones((4, 8))}}})
    assert fitted["params"]["Dense_0"]["kernel"].dtype == np.float32
    with pytest.raises(ConfigError, match=r"the saved networks do not fit this model: params/Dense_0/kernel is "
                                          r"\(4, 16\) in the checkpoint, \(4, 8\) in this model"):
        fit_arrays(template, {"params": {"Dense_0": {"kernel": np.ones((4, 16))}}})
    with pytest.raises(ConfigError, match="the saved networks do not fit this model: this model has "
                                          "params/Dense_0/kernel; the checkpoint has params/Dense_1/kernel"):
        fit_arrays(template, {"params": {"Dense_1": {"kernel": np.ones((4, 8))}}})
