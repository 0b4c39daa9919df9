"""`python -m maze_jax.train` end to end in a subprocess: table, checkpoints, resume, sweeps and bad input."""

import re
from pathlib import Path

import jax
import numpy as np
import pytest
from omegaconf import OmegaConf

from conftest import run_cli
from maze_jax.shell.checkpoints import CheckpointDir

SMALL = ["env=cartpole", "runner=dev", "algorithm.n_rollouts_per_update=8", "model.hidden_units=[16]",
         "seeding.agent_base_seed=1", "seeding.env_base_seed=2", "runner.stop_when_solved=false"]


def only_run_dir(base: Path) -> Path:
    runs = [p for p in base.glob("*/*") if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


def latest_meta_and_theta(run_dir: Path):
    """The latest checkpoint's metadata, its policy parameters as one flat vector, and the raw saved state."""
    store = CheckpointDir(str(run_dir / "checkpoints"), read_only=True)
    state = store.restore_raw()  # raw arrays, no template needed
    theta = np.concatenate([np.ravel(x) for x in jax.tree.leaves(state["learner"]["params"]["policy"])])
    return store.restore_meta(), theta, state


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory, cache_dir):
    base = tmp_path_factory.mktemp("runs")
    proc = run_cli([*SMALL, "algorithm.n_epochs=2", f"log_base_dir={base}"], base, cache_dir)
    assert proc.returncode == 0, proc.stderr
    return proc, only_run_dir(base)


def test_short_run_prints_table_and_writes_run_directory(two_epoch_run):
    proc, run_dir = two_epoch_run
    out = proc.stdout
    assert "********** Iteration 0 **********" in out and "********** Iteration 1 **********" in out
    assert "    2|eval                  BaseEnvEvents         reward                mean" in out
    assert "ESEvents              policy_grad_norm" in out and "-> new overall best model" in out
    # iterations 0 and 1 ran: the final evaluation's header counts them, it names no iteration 2
    assert "********** Final evaluation of the best model, after 2 epochs **********" in out
    assert "Iteration 2" not in out and "Traceback" not in proc.stderr
    assert "DiscreteActionEvents  action                substep_0/action" in out  # ES's action rows, as Maze's
    # the evaluations' cumulative counts, as Maze prints them
    value = lambda step, stat: [float(line.rsplit("|", 1)[1].replace(",", "")) for line in out.splitlines()  # noqa
                                if line.startswith(f"{step:>5}|eval") and line.split("|")[1].split()[-1] == stat]
    count, length = {e: value(e, "episode_count")[0] for e in (1, 2)}, {e: value(e, "mean_step_count")[0] for e in (1, 2)}
    assert value(1, "total_episode_count") == [count[1]] and value(2, "total_episode_count") == [count[1] + count[2]]
    assert value(2, "total_step_count") == [round(count[1] * length[1] + count[2] * length[2])]
    assert "Env CartPole-v1: a JAX env (gymnax), stepped inside the compiled programs" in out
    assert run_dir.parent.name == "CartPole-v1-flatten_concat-es-dev"  # named after the env id
    saved = OmegaConf.load(run_dir / "hydra_config.yaml")
    assert saved.seeding.agent_base_seed == 1 and saved.algorithm.n_rollouts_per_update == 8
    assert (run_dir / "model_summary.txt").read_text().strip().endswith("total parameters: 114")
    assert list(run_dir.glob("events.out.tfevents.*"))
    meta, theta, _ = latest_meta_and_theta(run_dir)
    assert meta["epoch"] == 2 and meta["total_step_count"] == 2 * 8 * 500
    assert meta["eval_total_episode_count"] == count[1] + count[2]  # resumed runs count on
    assert CheckpointDir(str(run_dir / "best"), read_only=True).latest_step() in (1, 2)


def assert_picture(path: Path, min_colours: int = 3) -> None:
    """`path` is a PNG that opens, of a sensible size, and not blank."""
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.width >= 300 and image.height >= 200
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
        assert colours is not None and len(colours) >= min_colours, f"{path} looks blank"


def test_the_run_directory_gets_pictures_of_the_networks_and_the_learning_curve(two_epoch_run):
    _, run_dir = two_epoch_run
    assert_picture(run_dir / "networks.png")
    assert_picture(run_dir / "learning_curve.png")


@pytest.mark.cli
def test_generated_seeds_are_written_back(tmp_path, cache_dir):
    args = [a for a in SMALL if not a.startswith("seeding")]
    proc = run_cli([*args, "algorithm.n_epochs=1", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    saved = OmegaConf.load(only_run_dir(tmp_path) / "hydra_config.yaml")
    assert isinstance(saved.seeding.env_base_seed, int) and isinstance(saved.seeding.agent_base_seed, int)


def test_resume_continues_exactly_where_the_run_stopped(two_epoch_run, tmp_path, cache_dir):
    _, first = two_epoch_run
    resumed = run_cli([f"input_dir={first}", "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'r'}"],
                      tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"Resumed {first} at epoch 2" in resumed.stdout
    assert "Iteration 2 *" in resumed.stdout and "Iteration 0 *" not in resumed.stdout
    straight = run_cli([*SMALL, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert straight.returncode == 0, straight.stderr
    meta_r, theta_r, _ = latest_meta_and_theta(only_run_dir(tmp_path / "r"))
    meta_s, theta_s, _ = latest_meta_and_theta(only_run_dir(tmp_path / "s"))
    assert meta_r["epoch"] == meta_s["epoch"] == 3
    assert meta_r["total_step_count"] == meta_s["total_step_count"]
    np.testing.assert_array_equal(theta_r, theta_s)  # 2 epochs + resume for 1 == 3 epochs, bit for bit
    assert (first / "checkpoints" / "2").is_dir()  # the earlier run is left as it was
    # TensorBoard: the resumed run's folder holds the whole curve, the same as the uninterrupted run's
    from maze_jax.shell.event_history import scalar_history

    curve = lambda run: [(step, v) for tag, v, step, _ in scalar_history(str(run), 10**9)  # noqa: E731
                         if tag == "eval_BaseEnvEvents/reward/mean"]
    assert [step for step, _ in curve(only_run_dir(tmp_path / "r"))] == [1, 2, 3]
    assert curve(only_run_dir(tmp_path / "r")) == curve(only_run_dir(tmp_path / "s"))


@pytest.mark.cli
def test_overrides_given_on_resume_apply(two_epoch_run, tmp_path, cache_dir):
    _, first = two_epoch_run
    proc = run_cli([f"input_dir={first}", "algorithm.n_epochs=3", "algorithm.optimizer.step_size=0.001",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run_dir(tmp_path)
    assert OmegaConf.load(run_dir / "hydra_config.yaml").algorithm.optimizer.step_size == 0.001
    _, _, state = latest_meta_and_theta(run_dir)
    np.testing.assert_allclose(state["learner"]["hparams"]["step_size"], 0.001)


@pytest.mark.cli
def test_multirun_sweep_writes_one_directory_per_job(tmp_path, cache_dir):
    proc = run_cli(["--multirun", *[a for a in SMALL if "agent_base_seed" not in a], "algorithm.n_epochs=1",
                    "seeding.agent_base_seed=1,2", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p.name for p in (tmp_path / "sweep").glob("*/*") if (p / "checkpoints").is_dir())
    assert jobs == ["0", "1"]
    # the sweep's summary: a table of its jobs by what sets them apart, a csv and one picture of every curve
    sweep = next((tmp_path / "sweep").iterdir())
    assert f"Sweep of 2 jobs in {sweep} (sweep_summary.csv, sweep_curves.png):" in proc.stdout
    table = proc.stdout.rsplit("sweep_curves.png):\n", 1)[1].splitlines()
    assert table[0].split("|")[1].strip() == "overrides" and "best eval mean" in table[0]
    assert [row.split("|")[1].strip() for row in table[1:3]] == [f"seeding.agent_base_seed={s}" for s in (1, 2)]
    summary = (sweep / "sweep_summary.csv").read_text().splitlines()
    assert len(summary) == 3 and summary[1].startswith('0,"seeding.agent_base_seed=1",')
    assert (sweep / "sweep_curves.png").stat().st_size > 0


BAD_INPUTS = [
    (["env=foo"], "Could not find 'env/foo'"),
    (["algorithm=td3"], "Available options in 'algorithm'"),
    (["model=bar"], "Could not find 'model/bar'"),
    (["env=gymnax", "env.name=Nope-v0"], "env.name='Nope-v0' is not a known environment. Valid names: Acrobot-v1"),
    (["algorithm.noise_stddev=abc"], "algorithm.noise_stddev='abc': expected a number"),
    (["algorithm.n_rollouts_per_update=0"], "algorithm.n_rollouts_per_update=0: must be >= 2"),
    (["algorithm.n_rollouts_per_update=7"], "must be even"),
    (["algorithm.optimizer.step_size=-1"], "algorithm.optimizer.step_size=-1.0: must be > 0.0"),
    (["model.hidden_units=[0]"], "model.hidden_units=[0]"),
    (["model.non_lin=Swish2"], "model.non_lin='Swish2' is unknown"),
    (["algorithm.noise_stdev=0.1"], "Key 'noise_stdev' is not in struct"),
    (["input_dir=/nonexistent/run"], "input_dir='/nonexistent/run' does not exist"),
    (["algorithm=ppo", "algorithm.batch_size=7"], "algorithm.batch_size=7 does not divide the rollout"),
    (["algorithm=ppo", "algorithm.gamma=1.5"], "algorithm.gamma=1.5: must be <= 1.0"),
    (["algorithm=a2c", "runner.concurrency=0"], "runner.concurrency=0: must be >= 1"),
    (["algorithm=ppo", "algorithm.lr=fast"], "algorithm.lr='fast': expected a number"),
    (["wrappers=frame_stack"], "Could not find 'wrappers/frame_stack'"),
    (["wrappers=vector_obs", "wrappers.observation_normalization.default_strategy=zscore"],
     "wrappers.observation_normalization.default_strategy='zscore' is unknown"),
    (["env=tutorial_cutting_2d_struct", "critic=shared", "algorithm=ppo"], "is not available for structured envs"),
    (["env=tutorial_cutting_2d_struct", "model=flatten_concat_shared_embedding", "algorithm=ppo"],
     "(model=flatten_concat_shared_embedding chooses it) is not available for structured envs"),
    (["runner=cluster"], "Available options in 'runner'"),
    (["runner.n_seeds=0"], "runner.n_seeds=0: must be >= 1"),
    (["log_base_dir=/dev/null/runs"], "log_base_dir='/dev/null/runs' cannot be created or written"),
]


@pytest.mark.parametrize("args, message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_bad_input_gives_one_clear_message_and_nonzero_exit(args, message, tmp_path, cache_dir):
    base = [] if any(a.startswith("log_base_dir") for a in args) else [f"log_base_dir={tmp_path}"]
    proc = run_cli([*args, *base], tmp_path, cache_dir)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "seeding:" not in proc.stdout  # refused before the config is printed: the error is all there is


@pytest.mark.cli
def test_resume_refuses_empty_and_incompatible_runs(two_epoch_run, tmp_path, cache_dir):
    _, first = two_epoch_run
    proc = run_cli([f"input_dir={first}", "model.hidden_units=[32]", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and "incompatible with this run's model: model.hidden_units was [16], is [32] (" \
        in proc.stderr
    proc = run_cli([f"input_dir={first}", "env=gymnax", "env.name=Acrobot-v1", f"log_base_dir={tmp_path}"],
                   tmp_path, cache_dir)
    assert proc.returncode == 2 and "incompatible with this run's env: env.name was 'CartPole-v1', is 'Acrobot-v1'" \
        in proc.stderr
    done = run_cli([f"input_dir={first}", "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'done'}"], tmp_path,
                   cache_dir)  # 2 epochs trained: nothing left, and it says so
    assert done.returncode == 0 and "The run has trained 2 epochs already, algorithm.n_epochs=1: no epoch to train" \
        in done.stdout and "Iteration" not in done.stdout and "Final evaluation" in done.stdout, done.stderr
    empty = tmp_path / "empty_run"
    (empty / ".hydra").mkdir(parents=True)
    (empty / "hydra_config.yaml").write_text((first / "hydra_config.yaml").read_text())
    (empty / ".hydra" / "overrides.yaml").write_text((first / ".hydra" / "overrides.yaml").read_text())
    proc = run_cli([f"input_dir={empty}", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and "holds no usable checkpoint" in proc.stderr
    assert "Traceback" not in proc.stderr
    corrupt = tmp_path / "corrupt_run"
    __import__("shutil").copytree(first, corrupt)
    for f in (corrupt / "checkpoints").rglob("*"):
        if f.is_file() and "state" in f.parts:
            f.write_text("garbage")
    proc = run_cli([f"input_dir={corrupt}", "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'from_best'}"],
                   tmp_path, cache_dir)  # the latest checkpoint is garbage: the best model is where training goes on
    assert proc.returncode == 0 and "Skipped checkpoints/2 (" in proc.stdout and ": using best/" in proc.stdout
    for f in (corrupt / "best").rglob("*"):
        if f.is_file() and "state" in f.parts:
            f.write_text("garbage")
    proc = run_cli([f"input_dir={corrupt}", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2 and "holds no usable checkpoint (checkpoints/2 (" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.learning
def test_default_command_solves_cartpole_and_stops(tmp_path, cache_dir):
    proc = run_cli(["env=cartpole", "algorithm=es", "seeding.agent_base_seed=0", "seeding.env_base_seed=0",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "reached the reward threshold 475: stopping" in proc.stdout
    assert "Final evaluation of the best model" in proc.stdout
    # the console output is in the run's train.log too
    log = (only_run_dir(tmp_path) / "train.log").read_text()
    assert "reached the reward threshold 475: stopping" in log and "Iteration 0" in log and "Run directory" in log
    # resuming a solved run with more epochs trains on to them, and the compact console is one line an epoch
    solved_at = int(proc.stdout.rsplit("Final evaluation of the best model, after ", 1)[1].split()[0])
    more = run_cli([f"input_dir={only_run_dir(tmp_path)}", f"algorithm.n_epochs={solved_at + 2}",
                    "runner.table=compact", f"log_base_dir={tmp_path / 'more'}"], tmp_path, cache_dir)
    assert more.returncode == 0, more.stderr
    assert "The run was solved already" in more.stdout and "Iteration" not in more.stdout
    lines = [line for line in more.stdout.splitlines() if line.startswith("epoch ")]
    assert [int(line.split()[1]) for line in lines] == [solved_at + 1, solved_at + 2]
    assert all("steps/s" in line and "eval" in line and "best" in line for line in lines)


def test_conf_tree_ships_inside_the_package():
    import maze_jax

    assert (Path(maze_jax.__file__).parent / "conf" / "conf_train.yaml").is_file()


AC_SMALL = ["env=cartpole", "runner=dev", "runner.concurrency=4", "algorithm.n_rollout_steps=16",
            "algorithm.epoch_length=2", "model.hidden_units=[16]", "seeding.agent_base_seed=1",
            "seeding.env_base_seed=2", "runner.stop_when_solved=false", "algorithm.n_epochs=2"]


@pytest.mark.parametrize("algorithm", ["ppo", pytest.param("a2c", marks=pytest.mark.cli)])  # A2C: the full tier
def test_actor_critic_runs_print_their_statistics(algorithm, tmp_path, cache_dir):
    extra = ["algorithm.batch_size=16"] if algorithm == "ppo" else []
    proc = run_cli([f"algorithm={algorithm}", *AC_SMALL, *extra, f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    for row in ["PolicyEvents          policy_loss", "CriticEvents          value_loss",
                "PolicyEvents          entropy", "PolicyEvents          learning_rate", "TimeEvents            steps_per_second"]:
        assert row in proc.stdout, row
    assert ("PolicyEvents          clip_fraction" in proc.stdout) == (algorithm == "ppo")
    assert (only_run_dir(tmp_path) / "checkpoints" / "2").is_dir()


@pytest.fixture(scope="module")
def small_ppo_run(tmp_path_factory, cache_dir) -> Path:
    """The run directory of a 2-epoch PPO run."""
    base = tmp_path_factory.mktemp("ppo")
    proc = run_cli(["algorithm=ppo", *AC_SMALL, "algorithm.batch_size=16", f"log_base_dir={base}"], base, cache_dir)
    assert proc.returncode == 0, proc.stderr
    return only_run_dir(base)


@pytest.mark.cli
def test_resuming_a_ppo_run_needs_no_repeated_groups_and_applies_new_lr(small_ppo_run, tmp_path, cache_dir):
    resumed = run_cli([f"input_dir={small_ppo_run}", "algorithm.lr=0.0001", "algorithm.n_epochs=3",
                       f"log_base_dir={tmp_path / 'b'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    run_dir = only_run_dir(tmp_path / "b")
    assert run_dir.parent.name == "CartPole-v1-flatten_concat-ppo-dev"  # the env id, kept through the resume
    assert "PolicyEvents          learning_rate                               |              0.0001" in resumed.stdout
    assert OmegaConf.load(run_dir / "hydra_config.yaml").algorithm.lr == 0.0001


@pytest.mark.cli
def test_a_ppo_run_continues_with_a2c_and_an_es_run_with_ppo(small_ppo_run, tmp_path, cache_dir):
    a2c = run_cli([f"input_dir={small_ppo_run}", "algorithm=a2c", "algorithm.n_epochs=1",
                   f"log_base_dir={tmp_path / 'a2c'}"], tmp_path, cache_dir)
    assert a2c.returncode == 0, a2c.stderr
    assert "Resumed the critic and policy of a ppo run" in a2c.stdout
    assert "optimizer state, counters and best score restart for a2c" in a2c.stdout
    es = run_cli([*SMALL, "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'es'}"], tmp_path, cache_dir)
    assert es.returncode == 0, es.stderr
    ppo2 = run_cli([f"input_dir={only_run_dir(tmp_path / 'es')}", "algorithm=ppo", "runner.concurrency=4",
                    "algorithm.n_rollout_steps=16", "algorithm.batch_size=16", "algorithm.epoch_length=1",
                    "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'ppo2'}"], tmp_path, cache_dir)
    assert ppo2.returncode == 0, ppo2.stderr
    assert "Resumed the policy of a es run" in ppo2.stdout


@pytest.mark.cli
def test_several_seeds_train_in_one_program(tmp_path, cache_dir):
    proc = run_cli(["algorithm=ppo", *AC_SMALL, "algorithm.batch_size=16", "runner.n_seeds=3",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "reward                mean_seed_min" in proc.stdout and "mean_seed_max" in proc.stdout
    assert "-> new best model for seeds [" in proc.stdout
    assert "(3 seeds: counts are totals, min and max over all seeds' episodes" in proc.stdout
    run_dir = only_run_dir(tmp_path)
    events = b"".join(p.read_bytes() for p in run_dir.glob("events.out.tfevents.*"))
    for k in range(3):  # each seed's own curves beside the combined ones
        assert f"seed_{k}/eval_BaseEnvEvents/reward/mean".encode() in events
    best = CheckpointDir(str(run_dir / "best"), read_only=True)
    raw = best._manager.restore(best.latest_step())["state"]
    kernels = jax.tree.leaves(raw["learner"]["params"]["policy"])
    assert all(k.shape[0] == 3 for k in kernels)  # one best model per seed
    assert not np.allclose(kernels[-1][0], kernels[-1][1])


HYDRA_SLIPS = [
    (["algorithm=PPO"], "Available options in 'algorithm': a2c, es, impala, ppo, sac. Did you mean algorithm=ppo?"),
    (["env.nmae=CartPole-v1"], "Key 'nmae' is not in struct. Did you mean env.name?"),
    (["-cn", "conf_rollout"], "this command runs conf_train; conf_rollout is python -m maze_jax.rollout's"),
    (["algorithm.lr=[1"], "algorithm.lr=[1: not a valid override"),
    (["~env"], "env is missing (removed with ~env?)"),
    (["~algorithm"], "algorithm is missing (removed with ~algorithm?)"),
]


@pytest.mark.parametrize("args, message", HYDRA_SLIPS, ids=[" ".join(a) for a, _ in HYDRA_SLIPS])
def test_hydra_slips_are_one_line_with_exit_2_and_a_suggestion(args, message, tmp_path, cache_dir):
    proc = run_cli([*args, f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and message in proc.stderr, proc.stderr


@pytest.mark.cli
def test_a_stop_at_a_threshold_the_final_evaluation_does_not_confirm_says_so(tmp_path, cache_dir):
    # one sampled evaluation episode crosses 450 by chance: the final 100 episodes average less, and a note says so
    proc = run_cli(["env=cartpole", "algorithm=ppo", "env.reward_threshold=450", "algorithm.epoch_length=1",
                    "algorithm.rollout_evaluator.n_episodes=1", "algorithm.rollout_evaluator.deterministic=false",
                    "seeding.agent_base_seed=1", "seeding.env_base_seed=1", "runner.table=compact",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr
    assert "reached the reward threshold 450: stopping" in proc.stdout
    note = re.search(r"Note: the final evaluation's mean (\S+) is under the reward threshold 450 that an evaluation of "
                     r"1 episode reached during training; more evaluation episodes per epoch "
                     r"\(algorithm\.rollout_evaluator\.n_episodes\) make that stop surer", proc.stdout)
    final = re.search(r"\|final\s+BaseEnvEvents\s+reward\s+mean\s+\|\s+(\S+)", proc.stdout)
    assert note and final and float(note.group(1)) == float(final.group(1)) < 450
