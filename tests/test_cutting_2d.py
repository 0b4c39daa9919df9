"""The 2D cutting env: inventory, demand, rewards, masks and the structured sub-step protocol."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.envs.cutting_2d import DEMAND, Cutting2D, cut_pieces, make_cutting_2d

KEY = jax.random.key(0)


def area(state):
    inv = np.asarray(state.inventory)[: int(state.size)]
    return int((inv[:, 0] * inv[:, 1]).sum())


def pieces(state):
    return [tuple(p) for p in np.asarray(state.inventory)[: int(state.size)].tolist()]


def flat_step(env, state, piece_idx, rotation=0, cut_order=0):
    action = {"piece_idx": jnp.int32(piece_idx), "cut_rotation": jnp.int32(rotation), "cut_order": jnp.int32(cut_order)}
    obs, state, reward, terminated, _ = env.step_env(KEY, state, action, env.default_params)
    return obs, state, float(reward)


@pytest.mark.parametrize("cut_order", [0, 1])
def test_cut_pieces_conserve_area(cut_order):
    piece, order = jnp.array([4, 3]), jnp.array([1, 2])
    leftovers = np.asarray(cut_pieces(piece, order, jnp.int32(cut_order)))
    assert (leftovers[:, 0] * leftovers[:, 1]).sum() + 2 == 12
    assert (leftovers >= 0).all()


def test_reset_holds_one_raw_piece_and_the_first_order():
    env = Cutting2D()
    obs, state = env.reset_env(KEY, env.default_params)
    assert pieces(state) == [(4, 3)]
    np.testing.assert_array_equal(obs["ordered_piece"], DEMAND[0])
    assert obs["inventory"].shape == (50, 2) and float(obs["inventory_size"][0]) == 1


def test_valid_cut_conserves_area_replenishes_the_raw_piece_and_advances_the_demand():
    env = Cutting2D()
    _, state = env.reset_env(KEY, env.default_params)
    for t in range(12):
        order = DEMAND[t % len(DEMAND)]
        before = area(state)
        # cut from the first piece that takes the order unrotated (the raw piece always does)
        idx = next(i for i, (x, y) in enumerate(pieces(state)) if order[0] <= x and order[1] <= y)
        was_raw = pieces(state)[idx] == (4, 3)
        obs, state, reward = flat_step(env, state, idx)
        assert reward == (-1.0 if was_raw else 0.0)
        assert area(state) == before - order[0] * order[1] + (12 if was_raw else 0)  # area conserved
        assert (4, 3) in pieces(state)  # a raw piece is always available
        np.testing.assert_array_equal(obs["ordered_piece"], DEMAND[(t + 1) % len(DEMAND)])  # demand advances
        assert int(state.time) == t + 1


def test_invalid_choices_cost_two_and_change_nothing():
    env = Cutting2D()
    _, state = env.reset_env(KEY, env.default_params)
    _, after, reward = flat_step(env, state, piece_idx=7)  # an empty slot
    assert reward == -2.0 and pieces(after) == pieces(state)
    small = state.replace(inventory=state.inventory.at[1].set(jnp.array([1, 1])), size=jnp.int32(2))
    _, after, reward = flat_step(env, small, piece_idx=1)  # order (1, 2) does not fit (1, 1)
    assert reward == -2.0 and pieces(after) == pieces(small)
    _, after, reward = flat_step(env, small, piece_idx=0, rotation=1)  # rotated (2, 1) fits the raw piece
    assert reward == -1.0


def test_full_inventory_drops_the_oldest_piece():
    env = Cutting2D(max_pieces_in_inventory=4)
    _, state = env.reset_env(KEY, env.default_params)
    state = state.replace(inventory=jnp.array([[2, 2], [1, 3], [3, 1], [4, 3]]), size=jnp.int32(4))
    _, state, _ = flat_step(env, state, piece_idx=3)  # raw piece cut: two leftovers and a new raw piece
    assert int(state.size) == 4
    assert pieces(state)[0] != (2, 2) and (4, 3) in pieces(state)


def test_struct_env_alternates_sub_steps_and_rewards_at_the_cut():
    spec = make_cutting_2d("struct")
    env = spec.env
    assert [s.name for s in env.sub_steps] == ["select_piece", "cut"]
    assert spec.horizon == 360  # 180 steps of two sub-steps
    obs, state = env.reset(KEY, spec.params)
    assert int(obs["actor_id"]) == 0
    obs, state, reward, *_ = env.step(KEY, state, {"piece_idx": 0, "cut_rotation": 0, "cut_order": 0}, spec.params)
    assert int(obs["actor_id"]) == 1 and float(reward) == 0.0
    np.testing.assert_array_equal(obs["selected_piece"], [4, 3])
    obs, state, reward, *_ = env.step(KEY, state, {"piece_idx": 5, "cut_rotation": 0, "cut_order": 0}, spec.params)
    assert int(obs["actor_id"]) == 0 and float(reward) == -1.0  # the cut used piece 0, not the ignored 5
    assert int(state.time) == 1


def test_masks_mark_exactly_the_valid_choices():
    """Over random masked play, a choice is allowed by the masks exactly when taking it is not penalised as invalid."""
    spec = make_cutting_2d("struct_masked")
    env, params = spec.env, spec.params
    # the reward of cutting the current order from every slot with every rotation: (50, 2)
    rewards = jax.jit(lambda state, slots: jax.vmap(lambda i: jax.vmap(
        lambda r: env.cut(state, i, r, jnp.int32(0))[1])(jnp.arange(2)))(slots))
    step = jax.jit(lambda key, state, action: env.step(key, state, action, params))
    obs, state = env.reset(KEY, params)
    rng = np.random.default_rng(0)
    for t in range(80):
        if int(obs["actor_id"]) == 0:
            valid = np.asarray(rewards(state, jnp.arange(50)) > -2)  # a slot is valid iff some rotation fits
            np.testing.assert_array_equal(np.asarray(obs["inventory_mask"]), valid.any(axis=1))
            allowed = np.flatnonzero(valid.any(axis=1))
            action = {"piece_idx": int(rng.choice(allowed)), "cut_rotation": 0, "cut_order": 0}
        else:
            valid = np.asarray(rewards(state, state.selected[None]))[0] > -2
            np.testing.assert_array_equal(np.asarray(obs["cutting_mask"]), valid)
            action = {"piece_idx": 0, "cut_rotation": int(rng.choice(np.flatnonzero(valid))),
                      "cut_order": int(rng.integers(2))}
        obs, state, reward, *_ = step(jax.random.key(t), state, jax.tree.map(jnp.int32, action))
        assert float(reward) > -2  # masked choices are never invalid


@pytest.mark.cli
def test_cli_trains_the_masked_cutting_env_and_rolls_it_out(tmp_path, cache_dir):
    from conftest import run_cli

    cmd = ["env=tutorial_cutting_2d_struct_masked", "wrappers=tutorial_cutting_2d",
           "model=tutorial_cutting_2d_struct_masked", "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1",
           "algorithm.epoch_length=2", "algorithm.n_rollout_steps=20", "algorithm.batch_size=40",
           f"log_base_dir={tmp_path}/train"]
    proc = run_cli(cmd, tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    for row in ("entropy               select_piece", "entropy               cut", "value_loss            cut"):
        assert row in proc.stdout
    assert "estimated from 1000 random-policy observations" in proc.stdout
    run_dir = next((tmp_path / "train").glob("*/*"))
    from maze_jax.trained_policy import load_policy

    policy = load_policy(str(run_dir))  # raw observations in, the run's normalisation and masks applied
    env = make_cutting_2d("struct_masked").env
    obs, state = env.reset(KEY, env.default_params)
    for _ in range(2):
        obs, state, *_ = env.step(KEY, state, {"piece_idx": 0, "cut_rotation": 0, "cut_order": 0}, env.default_params)
    action = policy.compute_action(jax.device_get(obs))
    assert set(action) == {"piece_idx", "cut_rotation", "cut_order"}
    assert bool(obs["inventory_mask"][int(action["piece_idx"])])
    proc = run_cli([f"input_dir={run_dir}", "runner.n_episodes=3", "runner.record_trajectory=true",
                    f"log_base_dir={tmp_path}/rollout"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    with np.load(next((tmp_path / "rollout" / "rollout").iterdir()) / "trajectories.npz") as data:
        assert data["action_piece_idx"].shape == (3, 360) and data["observation_inventory"].shape == (3, 360, 50, 2)
        assert data["observation_inventory"].max() <= 1.0  # the run's normalisation applies


@pytest.mark.cli
@pytest.mark.parametrize("variant, algorithm, model", [  # PPO on struct_masked: the CLI and learning tests
    ("tutorial_cutting_2d", "a2c", "flatten_concat"),
    ("tutorial_cutting_2d_struct", "es", "flatten_concat"),
])
def test_every_variant_trains_with_every_algorithm_family(variant, algorithm, model):
    from maze_jax.collectors import policy_params
    from maze_jax.research import make_train
    from maze_jax.shell.settings import compose_config

    tiny = {"a2c": ["algorithm.epoch_length=1", "algorithm.n_rollout_steps=8"],
            "es": ["algorithm.n_rollouts_per_update=4"]}[algorithm]
    cfg, _ = compose_config([f"env={variant}", f"algorithm={algorithm}", f"model={model}", "runner=dev",
                             "wrappers=tutorial_cutting_2d", "algorithm.n_epochs=1", "runner.normalization_samples=100",
                             *tiny])
    train = make_train(cfg)
    state, metrics = jax.jit(train)(jax.random.key(0))
    before = policy_params(train.trainer.init(jax.random.key(0), jax.random.key(1)))
    after = policy_params(state)
    changed = [not np.allclose(a, b) for a, b in zip(jax.tree.leaves(after), jax.tree.leaves(before))]
    assert all(np.isfinite(a).all() for a in jax.tree.leaves(after)) and any(changed)
    assert int(metrics["train_BaseEnvEvents/reward/step_count"][0]) > 0
