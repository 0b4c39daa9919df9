"""Maze's config names as typed: model=vector_obs (squashed Gaussian), critic=flatten_concat_shared, the
experiments cartpole_ppo_wrappers, grid_search and optuna, and the rollout policies and runners."""

from __future__ import annotations

import csv
import importlib.util
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from gymnax.environments import spaces

from conftest import make_trainer, run_cli
from maze_jax.config import ConfigError
from maze_jax.models.distributions import DiagGaussian, SquashedGaussian, distribution_for

def installed(module: str) -> bool:
    """Whether `module` can be imported (its parent package may be missing too)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


HAS_JOBLIB = installed("hydra_plugins.hydra_joblib_launcher")
HAS_OPTUNA = installed("hydra_plugins.hydra_optuna_sweeper")
TINY_PPO = ["env=cartpole", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=2",
            "algorithm.n_rollout_steps=16", "algorithm.batch_size=32", "model.hidden_units=[16]",
            "runner.normalization_samples=100", "seeding.agent_base_seed=1", "seeding.env_base_seed=2"]


def test_vector_obs_is_two_dense_tanh_blocks_of_128_with_a_squashed_gaussian_for_boxes():
    env_spec, trainer = make_trainer(["env=gymnax", "env.name=Pendulum-v1", "algorithm=ppo", "model=vector_obs"])
    policy = trainer.algorithm.policy
    assert isinstance(policy.dist, SquashedGaussian)
    params = policy.init(jax.random.key(0), env_spec.observation_example())["params"]
    kernels = [params[name]["kernel"].shape for name in sorted(params)]
    assert kernels == [(3, 128), (128, 128), (128, 2)]  # obs 3 -> 128 -> 128 -> mean and log-std
    assert policy.network.non_lin == "Tanh"
    # on a discrete env the same model acts with logits
    _, trainer = make_trainer(["env=cartpole", "algorithm=ppo", "model=vector_obs"])
    assert trainer.algorithm.policy.dist.n_outputs == 2


def test_squashed_gaussian_actions_stay_inside_the_bounds_and_its_density_is_the_change_of_variables():
    dist = distribution_for(spaces.Box(-2.0, 3.0, (1,)), box="squashed_gaussian")
    out = jnp.array([0.5, math.log(4.0)])  # mean 0.5, std 4: wide, many samples beyond the bounds before squashing
    u = jax.vmap(lambda k: dist.sample(k, out))(jax.random.split(jax.random.key(0), 2000))
    actions = dist.to_env(u)
    assert float(actions.min()) >= -2.0 and float(actions.max()) <= 3.0 and float(jnp.abs(u).max()) > 4.0
    # log p(a) = log N(u) - log |da/du|, with da/du from autodiff of the squash
    gaussian = DiagGaussian((1,), -2.0, 3.0)
    for x in (-1.5, 0.0, 0.7, 2.0):
        slope = jax.grad(lambda v: dist.to_env(jnp.array([v]))[0])(x)
        expected = gaussian.log_prob(out, jnp.array([x])) - jnp.log(slope)
        assert float(dist.log_prob(out, jnp.array([x]))) == pytest.approx(float(expected), abs=1e-4)
    assert float(dist.to_env(dist.mode(out))[0]) == pytest.approx(-2.0 + (math.tanh(0.5) + 1) / 2 * 5, abs=1e-5)


def test_a_squashed_gaussian_needs_a_bounded_box_and_an_unknown_name_is_refused():
    with pytest.raises(ConfigError, match="bounded Box"):
        distribution_for(spaces.Box(-jnp.inf, jnp.inf, (2,)), box="squashed_gaussian")
    with pytest.raises(ConfigError, match="box_distribution='squashed'.*Valid: gaussian, squashed_gaussian"):
        distribution_for(spaces.Box(-1.0, 1.0, (2,)), box="squashed")


@pytest.mark.parametrize("overrides, message", [
    (["model.hidden_units=64"], "model.hidden_units=64: expected a non-empty list of positive integers"),
    (["model.hidden_units=[]"], "model.hidden_units=[]: expected"),
    (["model.hidden_units=[64,0]"], "model.hidden_units=[64, 0]: expected"),
    (["model.hidden_units=[64,1.5]"], "model.hidden_units=[64, 1.5]: expected"),
    (["critic=template_state", "critic.hidden_units=32"], "critic.hidden_units=32: expected"),
    (["algorithm=sac", "critic=template_state_action", "critic.hidden_units=[a]"], "critic.hidden_units=['a']"),
    (["env=gymnax", "env.name=Breakout-MinAtar", "model=pixel_obs", "model.strides=2"], "model.strides=2: expected"),
    (["env=gymnax", "env.name=Breakout-MinAtar", "model=pixel_obs", "model.channels=[16,-32]"],
     "model.channels=[16, -32]: expected"),
])
def test_layer_sizes_that_are_not_a_list_of_positive_integers_are_one_line(overrides, message):
    algorithm = [] if any(o.startswith("algorithm=") for o in overrides) else ["algorithm=ppo"]
    with pytest.raises(ConfigError, match=re.escape(message)):
        make_trainer(["env=cartpole", *algorithm, *overrides])


def test_flatten_concat_shared_is_the_shared_critic():
    _, shared = make_trainer(["env=cartpole", "algorithm=ppo", "critic=flatten_concat_shared"])
    _, separate = make_trainer(["env=cartpole", "algorithm=ppo"])
    assert shared.algorithm.policy.shared_value and not separate.algorithm.policy.shared_value


def test_flatten_concat_shared_embedding_is_flatten_concat_with_the_shared_critic():
    """Maze's model=flatten_concat_shared_embedding: flatten_concat's network with the value as an extra output;
    a critic group on the command line replaces the shared critic, and the model's keys stay settable."""
    from maze_jax.shell.settings import compose_config

    given = ["env=cartpole", "algorithm=ppo", "model=flatten_concat_shared_embedding", "model.hidden_units=[8]"]
    cfg, _ = compose_config(given)
    assert cfg.model == compose_config(["env=cartpole", "algorithm=ppo", "model.hidden_units=[8]"])[0].model
    assert cfg.critic.shared is True and make_trainer(given)[1].algorithm.policy.shared_value
    _, separate = make_trainer([*given, "critic=separate"])
    assert not separate.algorithm.policy.shared_value


@pytest.mark.cli
def test_the_shared_embedding_model_trains_and_rolls_out_by_mazes_names(tmp_path, cache_dir):
    """Trained with model=flatten_concat_shared_embedding, rolled out naming it (Maze's form), and refused in one
    line naming flatten_concat, whose critic is a network of its own."""
    proc = run_cli([*TINY_PPO, "algorithm=ppo", "model=flatten_concat_shared_embedding", f"log_base_dir={tmp_path}"],
                   tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    run_dir = next(tmp_path.glob("CartPole-v1-flatten_concat_shared_embedding-ppo-dev/*"))
    assert yaml.safe_load((run_dir / "hydra_config.yaml").read_text())["critic"] == {"shared": True}
    assert "critic" not in (run_dir / "model_summary.txt").read_text()  # one network: the policy's, with the value
    rollout = [f"input_dir={run_dir}", "policy=torch_policy", "runner.n_episodes=2", f"log_base_dir={tmp_path}",
               "model.hidden_units=[16]"]
    proc = run_cli([*rollout, "model=flatten_concat_shared_embedding"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    refused = run_cli([*rollout, "model=flatten_concat"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert refused.returncode == 2 and "critic.shared was True, is False" in refused.stderr, refused.stderr


@pytest.mark.cli
def test_maze_names_train_together_from_the_command_line(tmp_path, cache_dir):
    """+experiment=cartpole_ppo_wrappers with model=vector_obs and critic=flatten_concat_shared, Maze's names."""
    proc = run_cli([*TINY_PPO, "+experiment=cartpole_ppo_wrappers", "model=vector_obs",
                    "critic=flatten_concat_shared", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    saved = yaml.safe_load(next(tmp_path.glob("*/*/hydra_config.yaml")).read_text())
    assert saved["algorithm"]["lr"] == 0.0001 and saved["algorithm"]["_target_"].endswith("ppo")
    assert saved["wrappers"]["observation_normalization"]["default_strategy"] == "mean_zero_std_one"
    assert saved["model"]["hidden_units"] == [16] and saved["critic"]["shared"] is True
    assert "learning_rate" in proc.stdout and "0.0001" in proc.stdout


@pytest.mark.cli
def test_a_continuous_env_trains_with_the_squashed_gaussian(tmp_path, cache_dir):
    proc = run_cli(["env=gymnax", "env.name=Pendulum-v1", "algorithm=ppo", "model=vector_obs", "runner=dev",
                    "algorithm.n_epochs=1", "algorithm.epoch_length=2", "algorithm.n_rollout_steps=16",
                    "algorithm.batch_size=32", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "final" in proc.stdout


@pytest.mark.extra
@pytest.mark.skipif(not HAS_JOBLIB, reason="the sweep extra is optional: pip install '.[sweep]'")
def test_grid_search_runs_the_jobs_of_a_sweep_in_parallel_processes(tmp_path, cache_dir):
    proc = run_cli(["--multirun", "+experiment=grid_search", *TINY_PPO, "algorithm=ppo",
                    "algorithm.lr=0.001,0.0001", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "Joblib.Parallel(n_jobs=4" in proc.stdout + proc.stderr
    runs = sorted(tmp_path.glob("sweep/*/*/hydra_config.yaml"))
    assert [yaml.safe_load(p.read_text())["algorithm"]["lr"] for p in runs] == [0.001, 0.0001]


@pytest.mark.extra
@pytest.mark.skipif(not HAS_OPTUNA, reason="the sweep extra is optional: pip install '.[sweep]'")
def test_an_optuna_sweep_maximises_the_best_evaluation_mean_of_each_trial(tmp_path, cache_dir):
    proc = run_cli(["--multirun", "+experiment=optuna", "hydra.sweeper.n_trials=2", *TINY_PPO,
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "setup plugin" not in proc.stdout + proc.stderr  # its database layer stays quiet
    results = yaml.safe_load(next(tmp_path.glob("sweep/*/optimization_results.yaml")).read_text())
    trial_bests = [float(m) for m in
                   re.findall(r"-> new overall best model ([-\d.]+)", proc.stdout)]
    assert len(list(tmp_path.glob("sweep/*/*/hydra_config.yaml"))) == 2
    assert set(results["best_params"]) == {"algorithm.lr", "algorithm.entropy_coef"}
    assert math.isfinite(results["best_value"]) and results["best_value"] == pytest.approx(max(trial_bests), abs=1e-3)


@pytest.mark.cli
@pytest.mark.parametrize("launcher", ["basic", "joblib"])
def test_a_failing_job_does_not_skip_the_jobs_after_it_and_the_last_line_says_so(launcher, tmp_path, cache_dir):
    if launcher == "joblib" and not HAS_JOBLIB:
        pytest.skip("the sweep extra is optional: pip install '.[sweep]'")
    experiment = ["+experiment=grid_search"] if launcher == "joblib" else []
    proc = run_cli(["--multirun", *experiment, *TINY_PPO, "algorithm=ppo", "algorithm.lr=0.001,-1,0.0001",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == ["Error: algorithm.lr=-1.0: must be > 0.0",
                                        "Error: a job of the sweep failed (algorithm.lr=-1.0: must be > 0.0); the "
                                        "sweep's other jobs ran"], proc.stderr[-3000:]
    runs = sorted(tmp_path.glob("sweep/*/*/hydra_config.yaml"))  # jobs 0 and 2 trained; job 1 left nothing
    assert [yaml.safe_load(p.read_text())["algorithm"]["lr"] for p in runs] == [0.001, 0.0001]


@pytest.mark.extra
@pytest.mark.skipif(not HAS_OPTUNA, reason="the sweep extra is optional: pip install '.[sweep]'")
@pytest.mark.parametrize("space, message", [
    ("algorithm.lr=tag(log,interval(0,1))", "The `low` value must be larger than 0 for a log distribution"),
    ("algorithm.lr=interval(-1,-0.5)", "must be > 0.0); Optuna stopped the study there"),
])
def test_a_bad_optuna_search_space_is_one_line(space, message, tmp_path, cache_dir):
    proc = run_cli(["--multirun", "+experiment=optuna", "hydra.sweeper.n_trials=2", *TINY_PPO, space,
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr[-3000:]
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("Error: ") and message in last and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert len(proc.stderr.splitlines()) <= 2  # the failed trial's own line, then the sweep's


def test_a_missing_sweep_plugin_is_one_line_naming_the_extra():
    from hydra.errors import MissingConfigException

    from maze_jax.shell.settings import hydra_error_line

    error = MissingConfigException("Could not find 'hydra/sweeper/optuna'", "hydra/sweeper/optuna", ["basic"])
    assert hydra_error_line(error) == ("hydra/sweeper=optuna needs Hydra's Optuna sweeper plugin: "
                                       'pip install "maze-jax[sweep]"')


def test_masked_random_policy_honours_the_masks_and_random_policy_ignores_them():
    from maze_jax.models import RandomPolicy
    from maze_jax.trained_policy import TrainedPolicy

    env_spec, _ = make_trainer(["env=tutorial_cutting_2d_struct_masked", "algorithm=ppo"])

    def mean_return(masked: bool) -> float:
        returns, _ = TrainedPolicy(RandomPolicy(env_spec, masked), None, env_spec).play(16, jax.random.key(3))
        return float(np.mean(returns))

    masked, unmasked = mean_return(True), mean_return(False)
    # without masks most piece choices are empty slots (-2 each); with them every choice is valid
    assert masked > unmasked + 100, (masked, unmasked)


def test_torch_policy_is_mazes_name_for_the_trained_policy():
    from hydra import compose, initialize_config_dir

    from maze_jax.config import CONFIG_DIR

    with initialize_config_dir(CONFIG_DIR, version_base=None):
        maze = compose("conf_rollout", overrides=["policy=torch_policy", "policy.checkpoint=latest"]).policy
        ours = compose("conf_rollout", overrides=["policy=trained_policy", "policy.checkpoint=latest"]).policy
    assert maze == ours and maze._target_ == "maze_jax.trained_policy.trained_policy"


@pytest.mark.parametrize("runner", ["sequential", "parallel"])
def test_rollout_runners_play_the_asked_number_of_episodes(runner, tmp_path, cache_dir):
    proc = run_cli([f"runner={runner}", "policy=masked_random_policy", "env=tutorial_cutting_2d_struct_masked",
                    "runner.n_episodes=3", "seeding.env_base_seed=1", f"log_base_dir={tmp_path}"], tmp_path,
                   cache_dir, module="maze_jax.rollout")
    assert proc.returncode == 0, proc.stderr
    with open(next(tmp_path.glob("rollout/*/episodes.csv"))) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(int(r["length"]) == 360 for r in rows)
