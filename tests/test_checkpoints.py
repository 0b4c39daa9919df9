"""A whole ES training state (parameters, Adam state, typed RNG key, counters) survives an Orbax round trip."""

import jax
import numpy as np
import pytest

from maze_jax.algorithms import build_trainer
from maze_jax.config import ConfigError
from maze_jax.envs import make_gymnax
from maze_jax.session import compose_config
from maze_jax.shell.checkpoints import CheckpointDir, open_for_resume

def small_trainer():
    cfg, _ = compose_config(["env=cartpole", "algorithm.n_rollouts_per_update=4", "algorithm.max_steps=20",
                             "model.hidden_units=[8]", "runner.n_eval_rollouts=2"])
    return build_trainer(cfg, make_gymnax("CartPole-v1"))


def test_state_round_trip_is_exact(tmp_path):
    trainer = small_trainer()
    epoch = jax.jit(trainer.train_epoch)
    state, _ = epoch(trainer.init(jax.random.key(7)))  # non-trivial Adam moments
    store = CheckpointDir(str(tmp_path / "ck"))
    store.save(3, state, {"epoch": 3, "best_score": 12.5})
    template = trainer.init(jax.random.key(0))
    restored, meta = CheckpointDir(str(tmp_path / "ck"), read_only=True).restore(template)
    assert meta == {"epoch": 3, "best_score": 12.5}
    for a, b in zip(jax.tree.leaves(jax.random.key_data(state.key)), jax.tree.leaves(jax.random.key_data(restored.key))):
        np.testing.assert_array_equal(a, b)
    flat = lambda s: jax.tree.leaves(s.replace(key=jax.random.key_data(s.key)))
    for a, b in zip(flat(state), flat(restored)):
        np.testing.assert_array_equal(a, b)
    # the restored state trains on identically
    np.testing.assert_array_equal(epoch(state)[0].theta, epoch(restored)[0].theta)


def test_missing_or_empty_checkpoint_dirs_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        open_for_resume(str(tmp_path / "nope"))
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        open_for_resume(str(tmp_path / "run"))
