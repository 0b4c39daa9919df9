"""Population-based training: the exploit-and-explore step, its settings, and a population from the command line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_cli
from test_cli import latest_meta_and_theta, only_run_dir

from maze_jax.algorithms.actor_critic import ActorCriticConfig, ACHyperparams
from maze_jax.algorithms.pbt import exploit_and_explore, spread
from maze_jax.config import ConfigError
from maze_jax.shell.pbt import read_pbt
from maze_jax.shell.settings import compose_config, read_algorithm, read_settings


def population(n: int):
    from flax import struct

    @struct.dataclass
    class State:
        params: jax.Array
        key: jax.Array
        hparams: ACHyperparams

    base = ActorCriticConfig().hyperparams()
    hparams = jax.tree.map(lambda x: jnp.full((n,), x), base)
    return State(jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((n, 3)), jax.random.split(jax.random.key(0), n),
                 hparams)


def test_the_worst_members_copy_a_best_ones_whole_state_and_perturb_the_explored_hyperparameters():
    state = population(8)
    scores = jnp.array([5.0, jnp.nan, 7.0, 1.0, 8.0, 6.0, 2.0, 9.0])  # NaN: no episode ended, counts as the worst
    new, source = exploit_and_explore(state, scores, jax.random.key(3), ("lr",), 0.25, (0.8, 1.25))
    source = np.asarray(source)
    assert set(np.flatnonzero(source != np.arange(8))) == {1, 3}  # the worst quarter: NaN and 1.0
    assert set(source[[1, 3]]) <= {4, 7}  # each copies one of the best quarter (8.0, 9.0)
    for i in (1, 3):
        np.testing.assert_array_equal(new.params[i], state.params[source[i]])
        ratio = float(new.hparams.lr[i] / state.hparams.lr[source[i]])
        assert min(abs(ratio - 0.8), abs(ratio - 1.25)) < 1e-6
        assert not np.array_equal(jax.random.key_data(new.key[i]), jax.random.key_data(state.key[source[i]]))
    np.testing.assert_array_equal(new.hparams.gamma, state.hparams.gamma)  # not explored
    kept = np.array([i for i in range(8) if i not in (1, 3)])
    np.testing.assert_array_equal(new.params[kept], state.params[kept])
    np.testing.assert_array_equal(new.hparams.lr[kept], state.hparams.lr[kept])
    again, _ = exploit_and_explore(state, scores, jax.random.key(3), ("lr",), 0.25, (0.8, 1.25))
    np.testing.assert_array_equal(again.hparams.lr, new.hparams.lr)  # deterministic for a key
    two, source = exploit_and_explore(population(2), jnp.array([1.0, 2.0]), jax.random.key(0), ("lr",), 0.25,
                                      (0.8, 1.25))
    assert np.asarray(source).tolist() == [1, 1]  # at least one member is replaced


def test_the_first_population_spreads_log_uniformly_around_the_config():
    hparams = population(64).hparams
    spread_out = spread(hparams, jax.random.key(1), ("lr", "entropy_coef"), 2.0)
    ratio = np.asarray(spread_out.lr / hparams.lr)
    assert ratio.min() >= 0.5 - 1e-6 and ratio.max() <= 2.0 + 1e-6 and ratio.std() > 0.2
    assert not np.allclose(spread_out.lr / hparams.lr, spread_out.entropy_coef / hparams.entropy_coef)
    np.testing.assert_allclose(spread(hparams, jax.random.key(1), ("lr",), 1.0).lr, hparams.lr)


def read(overrides):
    cfg, _ = compose_config(overrides)
    return read_settings(cfg)


@pytest.mark.parametrize("overrides, message", [
    (["+experiment=pbt", "algorithm=ppo", "runner.n_seeds=1"], "pbt: a population needs at least 2 members"),
    (["+experiment=pbt", "algorithm=ppo", "pbt.explore=[n_rollout_steps]"],
     "pbt.explore: n_rollout_steps is not a traced hyperparameter of the algorithm group. Keys that can be explored: "),
    (["+experiment=pbt", "algorithm=ppo", "pbt.perturb_factors=[0.8,-1]"], "pbt.perturb_factors=[0.8, -1]"),
    (["+experiment=pbt", "algorithm=ppo", "pbt.fraction=0.9"], "pbt.fraction=0.9: must be <= 0.5"),
    (["+experiment=pbt", "algorithm=ppo", "+grid.lr=[0.1,0.2]"], "pbt and grid:"),
])
def test_bad_pbt_settings_are_one_line(overrides, message):
    with pytest.raises(ConfigError) as error:
        read(overrides)
    assert str(error.value).startswith(message)


def test_pbt_explores_each_algorithms_learning_rate_and_exploration_by_default():
    assert read(["+experiment=pbt", "algorithm=ppo"]).pbt.keys == ("lr", "entropy_coef")
    assert read(["+experiment=pbt", "algorithm=es"]).pbt.keys == ("optimizer.step_size", "noise_stddev")
    assert read(["+experiment=pbt", "algorithm=sac"]).pbt.explored == ("lr", "entropy_coef")
    assert read(["algorithm=ppo"]).pbt is None
    cfg, _ = compose_config(["algorithm=ppo"])
    assert read_pbt({"interval": 1, "fraction": 0.5, "perturb_factors": [2], "init_spread": 1,
                     "explore": "gamma"}, cfg.algorithm, read_algorithm(cfg.algorithm, cfg.runner), 4).explored == \
        ("gamma",)


PBT = ["env=cartpole", "algorithm=ppo", "+experiment=pbt", "runner.n_seeds=4", "pbt.interval=1", "runner=dev",
       "runner.concurrency=4", "algorithm.n_rollout_steps=16", "algorithm.batch_size=32", "algorithm.epoch_length=2",
       "model.hidden_units=[8]", "runner.stop_when_solved=false", "seeding.agent_base_seed=1",
       "seeding.env_base_seed=2", "algorithm.patience=0"]


@pytest.mark.cli
def test_a_population_trains_logs_its_schedule_and_resumes_bit_for_bit(tmp_path, cache_dir):
    from maze_jax.shell.event_history import scalar_history

    straight = run_cli([*PBT, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert straight.returncode == 0, straight.stderr[-3000:]
    assert "-> PBT: copied from better members and perturbed: member_" in straight.stdout
    assert "PBT: the best member is member_" in straight.stdout
    run = only_run_dir(tmp_path / "s")
    assert (run / "pbt_schedule.png").stat().st_size > 1000
    lr = {step: v for tag, v, step, _ in scalar_history(str(run), 10) if tag == "member_3/hparams/lr"}
    assert sorted(lr) == [1, 2, 3]
    first = run_cli([*PBT, "algorithm.n_epochs=2", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    resumed = run_cli([f"input_dir={only_run_dir(tmp_path / 'a')}", "algorithm.n_epochs=3",
                       f"log_base_dir={tmp_path / 'b'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    _, theta_s, state_s = latest_meta_and_theta(run)
    _, theta_r, state_r = latest_meta_and_theta(only_run_dir(tmp_path / "b"))
    np.testing.assert_array_equal(theta_r, theta_s)  # 2 epochs + resume for 1 == 3 epochs, bit for bit
    np.testing.assert_array_equal(state_r["learner"]["hparams"]["lr"], state_s["learner"]["hparams"]["lr"])
    assert len(set(np.asarray(state_s["learner"]["hparams"]["lr"]).tolist())) > 1  # the members' values differ
