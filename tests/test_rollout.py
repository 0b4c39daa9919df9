"""`python -m maze_jax.rollout`: a trained run's policy played again, files written, bad input refused."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli
from maze_jax.rollout import sets_group

TRAIN = ["env=cartpole", "runner=dev", "algorithm.n_rollouts_per_update=8", "model.hidden_units=[16]",
         "seeding.agent_base_seed=1", "seeding.env_base_seed=2", "runner.stop_when_solved=false",
         "algorithm.n_epochs=2", "runner.n_eval_rollouts=4", "runner.final_eval_rollouts=10"]


def table_value(output: str, prefix: str, statistic: str) -> float:
    """A value of the `reward` rows of Maze's table, e.g. ("final", "mean")."""
    match = re.search(rf"\|{prefix}\s+BaseEnvEvents\s+reward\s+{statistic}\s+\|\s+(\S+)", output)
    assert match, f"no {prefix} {statistic} row in:\n{output}"
    return float(match.group(1).replace(",", ""))  # thousands separators from 10,000 up


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, cache_dir) -> tuple[Path, str]:
    base = tmp_path_factory.mktemp("rollout_train")
    proc = run_cli([*TRAIN, f"log_base_dir={base}"], base, cache_dir)
    assert proc.returncode == 0, proc.stderr
    return next(base.glob("*/*")), proc.stdout


def only_rollout_dir(base: Path) -> Path:
    dirs = list((base / "rollout").iterdir())
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_rollout_reproduces_the_final_evaluation_and_records_trajectories(trained_run, tmp_path, cache_dir):
    run_dir, train_output = trained_run
    proc = run_cli([f"input_dir={run_dir}", "runner.n_episodes=10", "runner.record_trajectory=true",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    for statistic in ("mean", "std", "min", "max", "episode_count"):
        assert table_value(proc.stdout, "rollout", statistic) == table_value(train_output, "final", statistic)
    out = only_rollout_dir(tmp_path)
    with open(out / "episodes.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 10
    returns = np.array([float(r["return"]) for r in rows])
    assert returns.mean() == pytest.approx(table_value(proc.stdout, "rollout", "mean"), abs=1e-3)
    with np.load(out / "trajectories.npz") as data:
        assert data["observation"].shape == (10, 500, 4) and data["action"].shape == (10, 500)
        lengths = data["episode_length"]
        assert data["episode_ended"].all() and lengths.dtype.kind == "i"
        # the recorded rewards add up to each episode's return, and each episode ends where its length says
        for i in range(10):
            assert data["reward"][i, : lengths[i]].sum() == pytest.approx(returns[i])
            assert data["terminated"][i, lengths[i] - 1] or data["truncated"][i, lengths[i] - 1]
            assert not (data["terminated"][i, : lengths[i] - 1] | data["truncated"][i, : lengths[i] - 1]).any()


def test_random_policy_rollout_needs_no_run(tmp_path, cache_dir):
    proc = run_cli(["policy=random_policy", "runner.n_episodes=64", "seeding.env_base_seed=3",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    assert table_value(proc.stdout, "rollout", "episode_count") == 64
    assert 10 < table_value(proc.stdout, "rollout", "mean") < 40  # a random CartPole policy lasts ~22 steps


@pytest.mark.cli
def test_rollout_bad_input_is_one_line_and_exit_2(trained_run, tmp_path, cache_dir):
    run_dir, _ = trained_run
    no_checkpoint = tmp_path / "copied_config_only"
    no_checkpoint.mkdir()
    (no_checkpoint / "hydra_config.yaml").write_text((run_dir / "hydra_config.yaml").read_text())
    cases = [
        (["policy=trained_policy"], "policy=trained_policy needs input_dir"),  # without it: a random policy
        (["input_dir=/nonexistent/run"], "run directory '/nonexistent/run' does not exist"),
        ([f"input_dir={no_checkpoint}"], "holds no usable checkpoint (no checkpoint in checkpoints/ or best/)"),
        ([f"input_dir={run_dir}", "env=gymnax", "env.name=Acrobot-v1"], "needs Categorical(n=3)"),
        ([f"input_dir={run_dir}", "env=gymnax", "env.name=Pendulum-v1"], "needs DiagGaussian"),
        ([f"input_dir={run_dir}", "runner.n_episodes=0"], "runner.n_episodes=0: must be >= 1"),
        ([f"input_dir={run_dir}", "runner=local"], "runner: a training runner (runner=local, dev, distributed or ray) "
                                                   "cannot roll out; rollouts take runner=parallel"),
        ([f"input_dir={run_dir}", "policy.checkpoint=first"], "checkpoint='first': expected best or latest"),
    ]
    for args, message in cases:
        proc = run_cli([*args, f"log_base_dir={tmp_path}"], tmp_path, cache_dir, module="maze_jax.rollout")
        assert proc.returncode == 2, (args, proc.stderr)
        assert message in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_env_given_on_the_command_line_replaces_the_runs_env():
    assert sets_group(["env=gymnax", "runner.n_episodes=3"], "env")
    assert sets_group(["env.name=CartPole-v0"], "env")
    assert not sets_group(["environment_seed=3", "runner.n_episodes=3"], "env")


def rollout_cfg(run_dir, overrides: list[str]):
    """The rollout config of `python -m maze_jax.rollout input_dir=<run_dir> OVERRIDES`, as its command composes it."""
    from hydra import compose, initialize_config_dir

    from maze_jax.config import CONFIG_DIR
    from maze_jax.rollout import rollout_config

    given = [f"input_dir={run_dir}", *overrides]
    with initialize_config_dir(CONFIG_DIR, version_base=None):
        return rollout_config(compose("conf_rollout", overrides=given), given)


def test_settings_given_on_the_command_line_change_the_runs_own_env(tmp_path):
    from omegaconf import OmegaConf

    run_env = {"_target_": "maze_jax.envs.make_env", "name": "LunarLander-v3", "kwargs": {"gravity": -9.0},
               "max_episode_steps": 400, "reward_threshold": "auto", "backend": "gymnasium"}
    OmegaConf.save({"env": run_env, "wrappers": {}, "seeding": {"env_base_seed": 5}}, tmp_path / "hydra_config.yaml")
    env = rollout_cfg(tmp_path, ["env.max_episode_steps=1000", "+env.kwargs.enable_wind=true"]).env
    assert OmegaConf.to_container(env) == {**run_env, "max_episode_steps": 1000,
                                           "kwargs": {"gravity": -9.0, "enable_wind": True}}
    assert "reward_threshold" not in rollout_cfg(tmp_path, ["~env.reward_threshold"]).env  # make_env's default
    chosen = rollout_cfg(tmp_path, ["env=gym_env", "env.name=CartPole-v0"]).env  # another env altogether
    assert chosen.name == "CartPole-v0" and chosen.max_episode_steps is None and chosen.backend == "auto"


def test_a_rollout_takes_mazes_model_and_critic_names_where_they_are_the_runs(tmp_path):
    """Maze's rollout commands name the model and critic: accepted where they are the run's own, refused in one
    line where the run's parameters would not fit them."""
    from omegaconf import OmegaConf

    from maze_jax.config import ConfigError
    from maze_jax.shell.settings import compose_config

    trained, _ = compose_config(["env=cartpole", "algorithm=ppo", "model.hidden_units=[8]", "seeding.env_base_seed=3"])
    OmegaConf.save(trained, tmp_path / "hydra_config.yaml")
    assert rollout_cfg(tmp_path, ["model=flatten_concat", "model.hidden_units=[8]", "critic=template_state"])
    assert rollout_cfg(tmp_path, []).model.hidden_units == [64, 64]  # unused: the run's own model plays
    assert rollout_cfg(tmp_path, ["policy=random_policy", "model=vector_obs"])  # no network to fit
    for overrides, change in ((["model=vector_obs"], "model.hidden_units was [8], is [128, 128]"),
                              (["model.hidden_units=[16]"], "model.hidden_units was [8], is [16]"),
                              (["model.hidden_units=[8]", "critic=shared"], "critic.shared was False, is True"),
                              (["model=flatten_concat_shared_embedding", "model.hidden_units=[8]"],
                               "critic.shared was False, is True")):
        with pytest.raises(ConfigError, match=re.escape(change) + ".*leave model and critic out"):
            rollout_cfg(tmp_path, overrides)


def gif_frames(path) -> int:
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "GIF"
        image.seek(image.n_frames // 2)
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20)) > 2  # not blank
        return image.n_frames


@pytest.mark.cli
@pytest.mark.parametrize("env, steps", [(["env=tutorial_cutting_2d_struct_masked", "policy=masked_random_policy"], 360),
                                        (["env=gymnasium", "env.name=CartPole-v1", "policy=random_policy"], None),
                                        # gymnax's, drawn by their gymnasium twins
                                        (["env=cartpole", "policy=random_policy"], None),
                                        (["env=gymnax", "env.name=Pendulum-v1", "policy=random_policy"], 200)])
def test_rollout_videos_have_a_frame_per_step_plus_the_first(env, steps, tmp_path, cache_dir):
    proc = run_cli([*env, "runner.n_episodes=2", "runner.render=true", "runner.render_episodes=2",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    lengths = [int(n) for n in re.findall(r"Video of episode \d \((\d+) steps", proc.stdout)]
    assert len(lengths) == 2 and (steps is None or lengths == [steps, steps]) and min(lengths) >= 8
    out = only_rollout_dir(tmp_path)
    assert [gif_frames(out / f"episode_{i}.gif") for i in range(2)] == [n + 1 for n in lengths]
    assert "ALSA" not in proc.stderr and "XDG_RUNTIME_DIR" not in proc.stderr  # no sound card or display needed
    assert proc.stderr == "", proc.stderr[-2000:]


def test_an_env_that_cannot_draw_is_one_line(tmp_path, cache_dir):
    proc = run_cli(["env=gymnax", "env.name=Breakout-MinAtar", "policy=random_policy", "runner.render=true",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "env Breakout-MinAtar cannot draw itself" in proc.stderr and "CartPole-v1" in proc.stderr


def test_an_episode_that_did_not_end_is_nan_in_the_episodes_file(tmp_path):
    from maze_jax.rollout import write_episodes

    write_episodes(str(tmp_path / "episodes.csv"), np.array([4.5, np.nan]), np.array([9.0, np.nan]))
    with open(tmp_path / "episodes.csv") as f:
        rows = list(csv.reader(f))
    assert rows == [["episode", "return", "length"], ["0", "4.5", "9"], ["1", "nan", "nan"]]
    assert np.isnan(np.genfromtxt(tmp_path / "episodes.csv", delimiter=",", skip_header=1)[1, 1:]).all()


def test_an_episode_that_did_not_end_runs_to_the_last_recorded_step_in_the_trajectories(tmp_path):
    from maze_jax.envs.episodes import Recording
    from maze_jax.rollout import write_trajectories

    never = np.zeros((3, 2), bool)  # time-major: 3 steps of 2 envs; env 0 terminates at its second step
    terminated = never | [[0, 0], [1, 0], [0, 0]]
    part = Recording(np.zeros((3, 2, 1)), np.zeros((3, 2), np.int32), np.ones((3, 2)), terminated, never)
    write_trajectories(str(tmp_path / "t.npz"), [part], np.array([2.0, np.nan]), np.array([2.0, np.nan]))
    with np.load(tmp_path / "t.npz") as data:
        assert data["episode_length"].tolist() == [2, 3] and data["episode_length"].dtype == np.int32
        assert data["episode_ended"].tolist() == [True, False] and np.isnan(data["episode_return"][1])
        assert data["observation"].shape == (2, 3, 1)  # episode-major
