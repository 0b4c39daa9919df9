"""`model=pixel_obs`: the CNN torso for image observations, its CPU patch products against XLA's convolution,
dict observations with images and vectors, integer pixels, and a PPO epoch on a MinAtar game; `model=pixel_obs_rnn`:
the torso before a recurrent cell, replayed as it acted."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from maze_jax.config import ConfigError
from maze_jax.models import PixelObsPolicy, PixelObsRecurrentPolicy
from maze_jax.models.cnn import Conv
from maze_jax.shell.session import channels_first_note


@pytest.mark.parametrize("size, k, s", [((10, 10), 3, 1), ((9, 7), 3, 2), ((8, 8), 4, 1), ((11, 6), 5, 3)])
def test_patch_products_equal_xlas_convolution(size, k, s):
    x = jax.random.normal(jax.random.key(0), (*size, 3))
    patches, conv = Conv(5, k, s, use_patches=True), Conv(5, k, s, use_patches=False)
    params = patches.init(jax.random.key(1), x)
    params = jax.tree.map(lambda p: p + 0.1, params)  # a bias that is not zero
    a, b = patches.apply(params, x), conv.apply(params, x)
    assert a.shape == b.shape == (-(-size[0] // s), -(-size[1] // s), 5)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_images_go_through_the_cnn_and_vectors_beside_them():
    model = PixelObsPolicy(n_outputs=3, channels=(4,), kernel_sizes=(3,), strides=(1,), hidden_units=(8,))
    frame = jnp.ones((10, 10, 4))
    params = model.init(jax.random.key(0), frame)
    assert model.apply(params, frame).shape == (3,)
    assert params["params"]["obs_conv_0"]["kernel"].shape == (3, 3, 4, 4)
    obs = {"screen": frame, "speed": jnp.array([0.5, 1.0])}
    params = model.init(jax.random.key(0), obs)
    assert "screen_conv_0" in params["params"] and model.apply(params, obs).shape == (3,)
    assert params["params"]["Dense_0"]["kernel"].shape == (10 * 10 * 4 + 2, 8)  # features, then the vector
    grey = jnp.full((6, 6), 255, jnp.uint8)  # integer pixels are scaled to [0, 1]
    params = model.init(jax.random.key(0), grey)
    np.testing.assert_allclose(model.apply(params, grey), model.apply(params, jnp.ones((6, 6, 1))), rtol=1e-6)


def test_frame_stacks_with_channels_first_are_read_as_channels():
    model = PixelObsPolicy(n_outputs=3, channels=(8,), kernel_sizes=(3,), strides=(2,), hidden_units=(8,))
    stack = jax.random.randint(jax.random.key(0), (4, 12, 12), 0, 256).astype(jnp.uint8)  # gymnasium's FrameStack
    params = model.init(jax.random.key(1), stack)
    assert params["params"]["obs_conv_0"]["kernel"].shape == (3, 3, 4, 8)  # 4 channels in, not 12
    np.testing.assert_allclose(model.apply(params, stack), model.apply(params, jnp.moveaxis(stack, 0, -1)), rtol=1e-6)
    minatar = jnp.ones((10, 10, 4))  # channels last stays so
    assert model.init(jax.random.key(1), minatar)["params"]["obs_conv_0"]["kernel"].shape == (3, 3, 4, 8)
    as_given = PixelObsPolicy(n_outputs=3, channels=(8,), kernel_sizes=(3,), strides=(2,), hidden_units=(8,),
                              image_layout="hwc")
    assert as_given.init(jax.random.key(1), stack)["params"]["obs_conv_0"]["kernel"].shape == (3, 3, 12, 8)
    forced = PixelObsPolicy(n_outputs=3, channels=(8,), kernel_sizes=(3,), strides=(2,), hidden_units=(8,),
                            image_layout="chw")
    assert forced.init(jax.random.key(1), minatar)["params"]["obs_conv_0"]["kernel"].shape == (3, 3, 10, 8)
    assert channels_first_note({"frames": stack, "speed": jnp.ones(2)}, "auto") == (
        "Note: the pixel model reads 'frames' (4, 12, 12) as 4 channels of 12x12 (model.image_layout=hwc: height, "
        "width, channels)")
    assert channels_first_note(stack, "auto").startswith("Note: the pixel model reads observations (4, 12, 12) as")
    assert channels_first_note(minatar, "auto") == channels_first_note(stack, "chw") == ""  # nothing guessed
    with pytest.raises(ConfigError, match="model.image_layout='nchw' is unknown. Valid: auto, hwc, chw"):
        PixelObsPolicy(n_outputs=3, image_layout="nchw").init(jax.random.key(1), jnp.ones((6, 6)))


def test_bad_pixel_obs_configs_are_one_line():
    with pytest.raises(ConfigError, match="needs an image observation"):
        PixelObsPolicy(n_outputs=2).init(jax.random.key(0), jnp.zeros(4))
    with pytest.raises(ConfigError, match="one entry per convolution"):
        PixelObsPolicy(n_outputs=2, channels=(4, 8), kernel_sizes=(3,)).init(jax.random.key(0), jnp.zeros((5, 5)))


def test_the_recurrent_pixel_model_keeps_the_torsos_parameter_names_and_replays_steps_as_it_acted():
    """pixel_obs_rnn is the torso of pixel_obs (its layers named alike) before vector_obs_rnn's cell: one step at a
    time from a memory gives what a replay of the whole sequence gives, with the memory reset where an episode
    starts, and another memory gives other outputs."""
    from maze_jax.models.recurrent import unroll_networks

    sizes = dict(channels=(4,), kernel_sizes=(3,), strides=(1,), hidden_units=(8,))
    model = PixelObsRecurrentPolicy(n_outputs=3, memory_units=6, **sizes)
    frames = jax.random.uniform(jax.random.key(0), (5, 2, 6, 6, 2))  # (T, B, H, W, C)
    params = model.init(jax.random.key(1), frames[0, 0], model.initial_memory())
    flat = PixelObsPolicy(n_outputs=3, **sizes).init(jax.random.key(1), frames[0, 0])
    assert set(params["params"]["torso"]) == set(flat["params"]) - {"Dense_1"}  # Dense_1: pixel_obs's output layer
    starts = jnp.zeros((5, 2), bool).at[3, 1].set(True)
    memory = jax.random.normal(jax.random.key(2), (2, 6))
    outputs, _ = jax.jit(lambda p, f, s, m: unroll_networks({"policy": model}, {"policy": p}, f, s, {"policy": m}))(
        params, frames, starts, memory)
    step = jax.jit(model.apply)
    for b in range(2):
        m = memory[b]
        for t in range(5):
            m = jnp.zeros_like(m) if starts[t, b] else m
            out, m = step(params, frames[t, b], m)
            np.testing.assert_allclose(outputs["policy"][t, b], out, rtol=1e-5, atol=1e-6)
    other, _ = step(params, frames[0, 0], memory[1])
    assert not np.allclose(other, outputs["policy"][0, 0], atol=1e-4)


@pytest.mark.cli
@pytest.mark.parametrize("model", ["pixel_obs", "pixel_obs_rnn"])
def test_ppo_trains_an_epoch_on_minatar_with_the_pixel_models(model):
    from conftest import init_state, make_trainer

    _, trainer = make_trainer(["env=gymnax", "env.name=Breakout-MinAtar", f"model={model}", "wrappers=pixel_obs",
                               "algorithm=ppo", "runner.concurrency=8", "algorithm.n_rollout_steps=16",
                               "algorithm.batch_size=64", "algorithm.epoch_length=2", "model.channels=[8]",
                               "model.kernel_sizes=[3]", "model.strides=[1]", "model.hidden_units=[32]"])
    state, metrics = jax.jit(trainer.train_epoch)(init_state(trainer))
    assert int(metrics["train_BaseEnvEvents/reward/step_count"]) == 2 * 16 * 8
    assert all(np.isfinite(np.asarray(v, np.float64)).all() for v in jax.tree.leaves(metrics))
    policy = state.learner.params["policy"]["params"]
    assert any("conv" in name for name in policy.get("torso", policy))


def test_a_run_with_very_large_networks_says_so_before_it_trains():
    from maze_jax.shell.session import parameter_shapes, size_note

    def shapes(frame):  # the pixel model's default torso: stride 1 keeps the whole frame for the dense layer
        params = jax.eval_shape(PixelObsPolicy(n_outputs=5).init, jax.random.key(0), jnp.zeros(frame, jnp.uint8))
        return parameter_shapes(type("State", (), {"learner": type("Learner", (), {"params": params})})(), 1)

    assert size_note(shapes((10, 10, 4))) == ""  # MinAtar's frames
    dense = 96 * 96 * 32 * 256 + 256  # CarRacing's frames: the dense layer holds most
    convolutions, head = 3 * 3 * 3 * 16 + 16 + 3 * 3 * 16 * 32 + 32, 256 * 5 + 5
    assert size_note(shapes((96, 96, 3))).startswith(f"Note: the networks have {dense + convolutions + head:,} "
                                                     "parameters, which every checkpoint writes")


@pytest.mark.cli
def test_mazes_pixel_obs_rnn_trains_resumes_and_rolls_out_from_the_command_line(tmp_path, cache_dir):
    from conftest import run_cli
    from test_cli import only_run_dir

    small = ["env=gymnax", "env.name=Breakout-MinAtar", "model=pixel_obs_rnn", "wrappers=pixel_obs", "algorithm=ppo",
             "model.channels=[4]", "model.kernel_sizes=[3]", "model.strides=[2]", "model.hidden_units=[16]",
             "model.memory_units=8", "runner.concurrency=4", "algorithm.n_rollout_steps=16", "algorithm.batch_size=32",
             "algorithm.epoch_length=2", "algorithm.rollout_evaluator.n_episodes=2", "runner.final_eval_rollouts=2"]
    first = run_cli([*small, "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr
    run_dir = only_run_dir(tmp_path / "a")
    resumed = run_cli([f"input_dir={run_dir}", "algorithm.n_epochs=2", f"log_base_dir={tmp_path / 'r'}"], tmp_path,
                      cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert "Resumed" in resumed.stdout
    rollout = run_cli([f"input_dir={run_dir}", "runner.n_episodes=2"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr
