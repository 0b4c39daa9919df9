"""Maze's action rows (`DiscreteActionEvents action substep_0/action [len:N, μ:X]`): counted per head and per
sub-step, added up over an epoch's updates and over seeds, shown in the table, and the learner's rows per sub-step."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import run_cli
from maze_jax.models.distributions import Categorical, DiagGaussian, Joint
from maze_jax.shell.table_rows import epoch_rows
from maze_jax.shell.table import ActionSummary
from maze_jax.algorithms.metrics import action_statistics, epoch_totals


def test_discrete_heads_count_each_choice_and_continuous_heads_their_mean():
    action = jnp.array([[0, 2], [2, 2]])  # (T=2, B=2)
    rows = action_statistics(Categorical(3), action)
    assert rows["train_DiscreteActionEvents/action/substep_0/action"].tolist() == [1, 0, 3]
    box = DiagGaussian((2,), -1.0, 1.0)
    rows = action_statistics(box, jnp.array([[[0.5, 3.0]], [[-0.5, 0.0]]]))  # (T=2, B=1, 2), 3.0 clipped to 1
    assert rows["train_ContinuousActionEvents/action/substep_0/action"].tolist() == [4, 1.0]


def test_a_structured_envs_heads_count_only_where_their_sub_step_acts():
    dist = Joint((("piece", Categorical(4)), ("cut", Categorical(2))))
    action = {"piece": jnp.array([[3], [1], [3]]), "cut": jnp.array([[1], [1], [0]])}
    acting = jnp.array([[0], [1], [0]])  # sub-step 0, then 1, then 0
    rows = action_statistics(dist, action, acting, {"piece": 0, "cut": 1})
    assert rows["train_DiscreteActionEvents/action/substep_0/piece"].tolist() == [0, 0, 0, 2]
    assert rows["train_DiscreteActionEvents/action/substep_1/cut"].tolist() == [0, 1]
    stacked = Joint((("0", Categorical(2)), ("1", Categorical(3))), stacked=True)
    assert "train_DiscreteActionEvents/action/substep_0/action_1" in action_statistics(stacked, jnp.zeros((1, 1, 2), int))


def test_a_multi_discrete_entry_of_a_dict_action_counts_each_of_its_choices():
    pick = Joint((("0", Categorical(2)), ("1", Categorical(3))), stacked=True)  # MultiDiscrete([2, 3]) or MultiBinary
    dist = Joint((("move", Categorical(2)), ("pick", pick)))
    action = {"move": jnp.array([[1], [0]]), "pick": jnp.array([[[1, 2]], [[1, 0]]])}  # (T=2, B=1, ...)
    rows = action_statistics(dist, action, jnp.array([[0], [1]]), {"move": 0, "pick": 1})
    assert rows["train_DiscreteActionEvents/action/substep_0/move"].tolist() == [0, 1]
    assert rows["train_DiscreteActionEvents/action/substep_1/pick_0"].tolist() == [0, 1]  # only where sub-step 1 acts
    assert rows["train_DiscreteActionEvents/action/substep_1/pick_1"].tolist() == [1, 0, 0]
    assert not any("Continuous" in tag for tag in rows)


def test_counts_add_up_over_updates_and_seeds_and_show_as_len_and_mean():
    per_update = {"train_DiscreteActionEvents/action/substep_0/action": jnp.array([[[1, 3]], [[2, 2]]]),  # (U, S, n)
                  "train_PolicyEvents/entropy": jnp.array([[0.5], [0.7]])}
    epoch = epoch_totals(per_update)
    assert epoch["train_PolicyEvents/entropy"].tolist() == pytest.approx([0.6])
    rows = epoch_rows({**epoch, "train_BaseEnvEvents/reward/episode_count": np.array([1])}, 8, 1, 1.0)
    # 3 choices of 0 and 5 of 1 in the epoch
    assert rows["train_DiscreteActionEvents/action/substep_0/action"] == ActionSummary(8, 5 / 8)


@pytest.mark.cli
@pytest.mark.parametrize("env", [["env=cartpole"], ["env=gymnasium", "env.name=CartPole-v1"]])
def test_the_table_shows_action_rows_for_jax_and_python_envs(env, tmp_path, cache_dir):
    proc = run_cli([*env, "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=2",
                    "algorithm.n_rollout_steps=16", "algorithm.batch_size=32", f"log_base_dir={tmp_path}"],
                   tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    row = next(line for line in proc.stdout.splitlines() if "DiscreteActionEvents" in line)
    assert "substep_0/action" in row and row.rstrip().endswith("]") and "[len:64, μ:" in row  # 2 x 16 x 2 envs
