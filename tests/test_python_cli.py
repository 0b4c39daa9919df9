"""Python envs end to end, as a user runs them: every algorithm from the CLI, resume (also to another algorithm),
rollouts, several seeds, a sweep, signals with worker processes, and each failure as one line with its exit."""

from __future__ import annotations

import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, run_cli, start_cli
from test_cli import only_run_dir

TESTS = Path(__file__).resolve().parent
CARTPOLE = ["env=gymnasium", "env.name=CartPole-v1", "runner=dev", "model.hidden_units=[16]",
            "seeding.agent_base_seed=1", "seeding.env_base_seed=2", "runner.stop_when_solved=false"]
TINY = {"ppo": ["algorithm.epoch_length=2", "algorithm.n_rollout_steps=32", "algorithm.batch_size=32"],
        "a2c": ["algorithm.epoch_length=2", "algorithm.n_rollout_steps=32"],
        "es": ["algorithm.n_rollouts_per_update=8", "runner.n_eval_rollouts=2"],
        "sac": ["algorithm.epoch_length=20", "algorithm.initial_buffer_size=64", "algorithm.batch_size=32",
                "algorithm.replay_buffer_size=1000", "algorithm.rollout_evaluator.n_episodes=2",
                "wrappers=vector_obs", "runner.normalization_samples=200"],  # observation normalisation too
        "impala": ["algorithm.epoch_length=2", "algorithm.n_rollout_steps=32", "algorithm.actors_batch_size=4",
                   "algorithm.rollout_evaluator.n_episodes=2"]}
COUNTDOWN = ["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "runner=dev", "algorithm=ppo",
             *TINY["ppo"], "model.hidden_units=[8]", "runner.stop_when_solved=false"]


def run_tests_cli(args, tmp_path, cache_dir, **kwargs):
    """The CLI with the tests folder as working directory, so `python_envs` (and its envs) import."""
    return run_cli([*args, f"log_base_dir={tmp_path}"], TESTS, cache_dir, **kwargs)


@pytest.mark.cli
@pytest.mark.parametrize("algorithm", ["es", "ppo", "a2c", "sac", "impala"])
def test_every_algorithm_trains_on_a_gymnasium_env(algorithm, tmp_path, cache_dir):
    proc = run_cli([*CARTPOLE, f"algorithm={algorithm}", *TINY[algorithm], "algorithm.n_epochs=2",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "    2|eval                  BaseEnvEvents         reward                mean" in proc.stdout
    assert "Final evaluation of the best model" in proc.stdout and "Traceback" not in proc.stderr
    # the final evaluation says it has started before its episodes are played
    assert re.search(r"Evaluating the best model on \d+ episodes \.\.\.\n(\.\.\. final evaluation: .*\n)*\*+ Final "
                     r"evaluation", proc.stdout)  # progress lines only if its episodes take a while
    assert only_run_dir(tmp_path).parent.name == f"CartPole-v1-flatten_concat-{algorithm}-dev"


@pytest.mark.cli
def test_python_env_runs_resume_switch_algorithm_and_roll_out(tmp_path, cache_dir):
    first = run_cli([*CARTPOLE, "algorithm=ppo", *TINY["ppo"], "algorithm.n_epochs=2", "wrappers=vector_obs",
                     "runner.normalization_samples=200", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    run = only_run_dir(tmp_path / "a")
    resumed = run_cli([f"input_dir={run}", "algorithm.n_epochs=3", "algorithm.lr=0.0001",
                       f"log_base_dir={tmp_path / 'b'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"Resumed {run} at epoch 2" in resumed.stdout and "restored from the checkpoint" in resumed.stdout
    assert "    3|train                 PolicyEvents          learning_rate" in resumed.stdout
    switched = run_cli([f"input_dir={run}", "algorithm=a2c", *TINY["a2c"], "algorithm.n_epochs=1",
                        f"log_base_dir={tmp_path / 'c'}"], tmp_path, cache_dir)
    assert switched.returncode == 0 and "Resumed the critic and policy of a ppo run" in switched.stdout
    rollout = run_cli([f"input_dir={run}", "runner.n_episodes=3", "runner.record_trajectory=true",
                       f"log_base_dir={tmp_path / 'r'}"], tmp_path, cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr[-3000:]
    data = np.load(next((tmp_path / "r" / "rollout").glob("*/trajectories.npz")))
    assert data["episode_return"].shape == (3,) and data["observation"].shape[0] == 3
    assert np.all(data["episode_length"] == data["episode_return"])  # CartPole pays 1 a step


@pytest.mark.cli
def test_several_seeds_and_a_sweep_on_a_python_env(tmp_path, cache_dir):
    typed = "env.name=python_envs:MazeJaxTest/Countdown-v4"  # only v0 is registered: the run trains it
    seeds = run_tests_cli([*COUNTDOWN, typed, "runner.n_seeds=2", "algorithm.n_epochs=1"], tmp_path / "s", cache_dir)
    assert seeds.returncode == 0, seeds.stderr[-3000:]
    assert [p.name for p in (tmp_path / "s").iterdir()] == ["python_envs_MazeJaxTest_Countdown-v0-flatten_concat-ppo-dev"]
    assert "reward                mean_seed_min" in seeds.stdout
    sweep = run_tests_cli(["--multirun", *COUNTDOWN, "algorithm.n_epochs=1", "algorithm.lr=0.001,0.0003"],
                          tmp_path / "m", cache_dir)
    assert sweep.returncode == 0, sweep.stderr[-3000:]
    assert len([p for p in (tmp_path / "m" / "sweep").glob("*/*") if (p / "checkpoints").is_dir()]) == 2


HANG = ["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "runner.env_step_timeout_s=2"]
BAD = [
    # envpool registers LunarLander-v2, gymnasium (without envpool) LunarLander-v3: either is the close match
    (["env=gym_env", "env.name=LunarLandr-v2"], 2, "Close matches: LunarLander-v"),
    (["env=gymnasium", "env.name=CartPole-v1", "+wrappers.gymnasium.wrappers.NoSuchWrapper={}"], 2,
     "is not a wrapper class"),
    (["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "+env.kwargs.fail_at=40"], 4,
     "env MazeJaxTest/Countdown-v0 raised ValueError in step (vector step"),
    (["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "+env.kwargs.nan_at=40"], 3,
     "returned non-finite rewards in vector step"),
    (["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "+env.kwargs.die_at=40",
      "runner.vectorization=async"], 4, "a worker process of env MazeJaxTest/Countdown-v0 died during step"),
    # an env that stops answering: in the actor thread, the learner's thread (policy_lag=0), async workers and ES
    *[([*HANG, f"+env.kwargs.hang_at={at}", *more], 4,
       "env MazeJaxTest/Countdown-v0 did not return from step within 2 s (vector step")
      for at, more in ((40, []), (40, ["runner.policy_lag=0"]), (40, ["runner.vectorization=async"]),
                       (4, ["algorithm=es", *TINY["es"]]))],
]


@pytest.mark.cli
@pytest.mark.parametrize("args, code, message", BAD, ids=[str(i) for i in range(len(BAD))])
def test_python_env_failures_are_one_line_with_their_exit_status(args, code, message, tmp_path, cache_dir):
    other_algorithm = any(a.startswith("algorithm=") for a in args)  # then none of PPO's settings
    base = [a for a in COUNTDOWN if not a.startswith("env") and not (other_algorithm and a.startswith("algorithm"))]
    proc = run_tests_cli([*base, *args, "algorithm.n_epochs=3"], tmp_path, cache_dir)
    assert proc.returncode == code, proc.stderr[-3000:]
    assert message in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and ".." not in errors[0], proc.stderr  # the env's full stop is not doubled
    if code in (3, 4):  # the epochs before the failure are saved
        assert (only_run_dir(tmp_path) / "checkpoints").is_dir()


def children_of(pid: int) -> set[int]:
    """Every live descendant of `pid` (from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                parents[int(entry.name)] = int(fields[1])
            except (OSError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def alive(pid: int) -> bool:
    try:
        return "zombie" not in (Path(f"/proc/{pid}/status").read_text().lower())
    except OSError:
        return False


@pytest.mark.signals
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signals_save_and_leave_no_worker_process(sig, code, tmp_path, cache_dir):
    proc = start_cli([*COUNTDOWN, "runner.vectorization=async", "runner.concurrency=3", "algorithm.n_epochs=0",
                      f"log_base_dir={tmp_path}", f"compilation_cache_dir={cache_dir}"], TESTS)
    workers = set()
    try:
        deadline = time.time() + 120
        for line in proc.stdout:
            workers |= children_of(proc.pid)
            if "Iteration 1 " in line:
                break
            assert time.time() < deadline
        workers |= children_of(proc.pid)
        assert len(workers) >= 3  # the async vector env's worker processes (eval and training envs)
        proc.send_signal(sig)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, proc.stderr.read()[-3000:]
    time.sleep(0.5)
    assert not [pid for pid in workers if alive(pid)]
    assert (only_run_dir(tmp_path) / "checkpoints").is_dir()


@pytest.mark.signals
def test_kill_9_leaves_no_worker_process_and_no_worker_tracebacks(tmp_path, cache_dir):
    proc = start_cli([*COUNTDOWN, "runner.vectorization=async", "runner.concurrency=8", "algorithm.n_epochs=0",
                      f"log_base_dir={tmp_path}", f"compilation_cache_dir={cache_dir}"], TESTS)
    try:
        deadline = time.time() + 120
        for line in proc.stdout:
            if "Iteration 1 " in line:
                break
            assert time.time() < deadline
        workers = children_of(proc.pid)
        assert len(workers) >= 8
        proc.kill()
        proc.wait()
        deadline = time.time() + 10
        while [pid for pid in workers if alive(pid)] and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in workers if alive(pid)]
        err = proc.stderr.read()  # the workers' stderr is the run's: it closes when the last of them ended
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "Traceback" not in err and "BrokenPipeError" not in err, err[-3000:]


@pytest.mark.learning
def test_ppo_learns_a_gymnasium_env_within_budget(tmp_path, cache_dir):
    """PPO with Maze's defaults on CartPole stepped as a Python env: solved within 4 epochs of 40,000 steps."""
    proc = run_cli(["env=gymnasium", "env.name=CartPole-v1", "algorithm=ppo", "algorithm.n_epochs=4",
                    "seeding.agent_base_seed=0", "seeding.env_base_seed=0", f"log_base_dir={tmp_path}"],
                   tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "reached the reward threshold 475" in proc.stdout


@pytest.mark.cli
def test_the_python_env_example_trains_resumes_and_rolls_out_from_its_own_folder(tmp_path, cache_dir):
    project = tmp_path / "python_project"
    shutil.copytree(REPO / "examples" / "python_project", project)
    train = run_cli(["--config-dir", "conf", "env=thermostat", "algorithm=ppo", "runner=dev", *TINY["ppo"],
                     "algorithm.n_epochs=1", "log_base_dir=outputs"], project, cache_dir)
    assert train.returncode == 0, train.stderr[-3000:]
    run = only_run_dir(project / "outputs")
    assert run.parent.name == "thermostat-flatten_concat-ppo-dev"
    # the run names the project's env: resume and rollout name conf/ again (a run directory is data)
    resumed = run_cli(["--config-dir", "conf", f"input_dir={run}", "algorithm.n_epochs=2", "log_base_dir=outputs2"],
                      project, cache_dir)
    assert resumed.returncode == 0 and "at epoch 1" in resumed.stdout, resumed.stderr[-3000:]
    rollout = run_cli(["--config-dir", "conf", f"input_dir={run}", "runner.n_episodes=2", "log_base_dir=outputs3"],
                      project, cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0 and "rollout               BaseEnvEvents" in rollout.stdout, rollout.stderr[-3000:]


@pytest.mark.cli
def test_a_resumed_runs_best_model_keeps_the_epoch_it_came_from(tmp_path, cache_dir):
    from maze_jax.shell.checkpoints import CheckpointDir

    # Countdown's best return (6) is found in the first epoch; later epochs cannot beat it
    first = run_tests_cli([*COUNTDOWN, "algorithm.lr=0.01", "algorithm.patience=0", "algorithm.n_epochs=3"],
                          tmp_path / "a", cache_dir)
    assert first.returncode == 0 and "-> new overall best model 6.00000!" in first.stdout, first.stderr[-2000:]
    run = only_run_dir(tmp_path / "a")
    best_epoch = CheckpointDir(str(run / "best"), read_only=True).restore_meta()["best_epoch"]
    assert best_epoch < 3
    resumed = run_tests_cli([f"input_dir={run}", "algorithm.n_epochs=4", "trust_input_dir=true"], tmp_path / "b",
                            cache_dir)  # our own run, whose env module (python_envs) this command does not name
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    best = CheckpointDir(str(only_run_dir(tmp_path / "b") / "best"), read_only=True)
    meta = best.restore_meta()
    assert best.latest_step() == best_epoch and meta["epoch"] == meta["best_epoch"] == best_epoch


@pytest.mark.cli
def test_a_slow_envs_final_evaluation_and_rollout_say_how_many_episodes_have_ended(tmp_path, cache_dir):
    # episodes of 20 steps of 0.01 s
    slow = ["+env.kwargs.length=20", "+env.kwargs.sleep_s=0.01", "runner.progress_interval_s=0.15"]
    trained = run_tests_cli([*COUNTDOWN, *slow, "algorithm.n_epochs=1", "algorithm.rollout_evaluator.n_episodes=2",
                             "runner.final_eval_rollouts=4"], tmp_path / "a", cache_dir)
    assert trained.returncode == 0, trained.stderr[-3000:]
    counts = re.findall(r"^\.\.\. final evaluation: (\d)/4 episodes \| running for \d+s$", trained.stdout, re.M)
    assert "2" in counts and set(counts) <= {"0", "2"}, trained.stdout[-3000:]  # batches of 2 episodes
    live = [int(n.replace(",", "")) for n in re.findall(  # the epoch's own progress: the env steps so far
        r"^\.\.\. epoch 0/1 \| 0 steps \| epoch 0 running for \d+s, ([\d,]+) env steps so far$", trained.stdout, re.M)]
    assert len(set(live)) >= 2 and live == sorted(live), trained.stdout[-3000:]
    assert re.search(r"^\.\.\. epoch 0/1 \| 0 steps \| epoch 0 running for \d+s, [\d,]+ env steps so far, evaluating$",
                     trained.stdout, re.M), trained.stdout[-3000:]  # the epoch's evaluation: 2 episodes of 0.2 s
    rollout = run_tests_cli([f"input_dir={only_run_dir(tmp_path / 'a')}", "runner.n_episodes=6", "runner.batch_size=3",
                             "trust_input_dir=true", slow[-1]], tmp_path / "b", cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr[-3000:]
    counts = re.findall(r"^\.\.\. rollout: (\d)/6 episodes \| running for \d+s$", rollout.stdout, re.M)
    assert "3" in counts and set(counts) <= {"0", "3"}, rollout.stdout[-3000:]


@pytest.mark.signals
def test_ctrl_c_during_a_rollout_is_one_line_and_status_130(tmp_path, cache_dir):
    proc = start_cli(["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "+env.kwargs.sleep_s=0.05",
                      "policy=random_policy", "runner.n_episodes=4", f"log_base_dir={tmp_path}",
                      f"compilation_cache_dir={cache_dir}"], TESTS, module="maze_jax.rollout")
    try:
        for line in proc.stdout:  # 50 steps of 0.05 s: the episodes take 2.5 s
            if line.startswith("Rolling out 4 episodes"):
                break
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and stderr.strip() == "SIGINT: stopped before the end", stderr[-3000:]


@pytest.mark.cli
def test_channels_first_frames_are_read_as_channels_and_the_run_says_so(tmp_path, cache_dir):
    proc = run_tests_cli(["env=gymnasium", "env.name=python_envs:MazeJaxTest/Frames-v0", "model=pixel_obs",
                          "runner=dev", "algorithm=ppo", *TINY["ppo"], "algorithm.n_epochs=1",
                          "runner.final_eval_rollouts=1"], tmp_path, cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Note: the pixel model reads observations (3, 8, 8) as 3 channels of 8x8" in proc.stdout
    summary = (only_run_dir(tmp_path) / "model_summary.txt").read_text()
    assert "(3, 3, 3, 16)" in summary and "(3, 3, 8, 16)" not in summary  # the first kernel: 3 channels in
