"""Interruption, hard kills, divergence and reproducibility, all on real training processes."""

import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, command_env, run_cli, start_cli
from maze_jax.shell.checkpoints import CheckpointDir
from test_cli import SMALL, only_run_dir

AC = ["env=cartpole", "algorithm=ppo", "runner=dev", "runner.concurrency=4", "algorithm.n_rollout_steps=16",
      "algorithm.batch_size=16", "algorithm.epoch_length=2", "model.hidden_units=[16]", "seeding.agent_base_seed=5",
      "seeding.env_base_seed=6", "runner.stop_when_solved=false", "algorithm.patience=0"]


FAULTS = Path(__file__).resolve().parent / "faults"


@pytest.fixture
def start(cache_dir):
    """Starts training processes whose stdout we can read line by line; kills any still running at the end."""
    started = []

    def launch(args, cwd, cache_dir=cache_dir, faults: dict | None = None):
        """`faults`: environment variables of tests/faults/sitecustomize.py (a slow or failing checkpoint)."""
        env = {**command_env(), "PYTHONPATH": f"{FAULTS}{os.pathsep}{REPO}", **faults} if faults else None
        started.append(start_cli([f"compilation_cache_dir={cache_dir}", *args], cwd, env=env))
        return started[-1]

    yield launch
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(proc, text: str, timeout: float = 120):
    deadline = time.time() + timeout
    for line in proc.stdout:
        if text in line:
            return
        assert time.time() < deadline, f"no {text!r} within {timeout} s"
    raise AssertionError(f"process ended before {text!r}: {proc.stderr.read()[-2000:]}")


def latest_theta(run_dir):
    store = CheckpointDir(str(run_dir / "checkpoints"), read_only=True)
    return store.latest_step(), store.restore_raw()


@pytest.mark.signals
@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_a_checkpoint_and_exits_within_seconds(sig, code, tmp_path, cache_dir, start):
    proc = start([*AC, "algorithm.n_epochs=0", f"log_base_dir={tmp_path / 'a'}"], tmp_path)
    wait_for(proc, "Iteration 2 ")
    sent = time.time()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code and time.time() - sent < 15
    assert "saving the latest checkpoint" in err and "Traceback" not in err
    run_dir = only_run_dir(tmp_path / "a")
    epoch, _ = latest_theta(run_dir)
    assert epoch >= 3
    resumed = run_cli([f"input_dir={run_dir}", f"algorithm.n_epochs={epoch + 1}", f"log_base_dir={tmp_path / 'b'}"],
                      tmp_path, cache_dir)
    assert resumed.returncode == 0, resumed.stderr
    assert f"at epoch {epoch} " in resumed.stdout and f"Iteration {epoch} *" in resumed.stdout


@pytest.mark.signals
def test_kill_9_at_random_moments_never_leaves_a_broken_checkpoint(tmp_path, cache_dir, start):
    rng = random.Random(0)
    for attempt in range(3):
        base = tmp_path / f"run{attempt}"
        proc = start([*SMALL, "algorithm.n_epochs=0", "runner.checkpoint_every_s=0", f"log_base_dir={base}"],
                     tmp_path)
        wait_for(proc, f"Iteration {rng.randint(2, 6)} ")
        time.sleep(rng.uniform(0.0, 0.1))  # epochs take milliseconds here: the kill often lands mid-save
        proc.kill()
        proc.wait(timeout=30)
        run_dir = only_run_dir(base)
        resumed = run_cli([f"input_dir={run_dir}", "algorithm.n_epochs=40",
                           f"log_base_dir={tmp_path / f'resumed{attempt}'}"],
                          tmp_path, cache_dir)
        assert resumed.returncode == 0, resumed.stderr
        assert "Resumed" in resumed.stdout and "Traceback" not in resumed.stderr


@pytest.mark.cli
def test_divergence_stops_with_a_message_and_keeps_good_checkpoints(tmp_path, cache_dir):
    first = run_cli([*SMALL, "algorithm.n_epochs=2", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr
    broken = run_cli([f"input_dir={only_run_dir(tmp_path / 'a')}", "algorithm.optimizer.step_size=1e30",
                      "algorithm.n_epochs=5", f"log_base_dir={tmp_path / 'b'}"], tmp_path, cache_dir)
    assert broken.returncode == 3
    assert "Error: non-finite train_ESEvents/policy_norm" in broken.stderr and "in epoch 2" in broken.stderr
    assert "Traceback" not in broken.stderr
    run_dir = only_run_dir(tmp_path / "b")
    epoch, state = latest_theta(run_dir)
    finite = lambda state: all(np.isfinite(x).all() for x in __import__("jax").tree.leaves(state["learner"]["params"]))
    assert epoch == 2 and finite(state)
    best = CheckpointDir(str(run_dir / "best"), read_only=True)
    assert best.latest_step() <= 2
    assert finite(best.restore_raw())


@pytest.mark.cli
def test_an_epoch_that_needs_more_memory_than_the_machine_has_is_refused_in_one_line(tmp_path, cache_dir):
    # ES's epoch holds a perturbation of the 1M parameters per member: 16,384 members need about 250 GiB
    proc = run_cli(["env=cartpole", "algorithm=es", "algorithm.n_rollouts_per_update=16384",
                    "model.hidden_units=[1024,1024]", f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
    assert proc.returncode == 6, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: the training epoch needs") and \
        "algorithm.n_rollouts_per_update" in errors[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout and "Iteration 0" not in proc.stdout


def tables(stdout: str) -> list[str]:
    """The logged statistics without wall-clock rows."""
    return [line for line in stdout.splitlines() if "|" in line and "TimeEvents" not in line]


@pytest.mark.cli
def test_same_seeds_reproduce_exactly_other_seeds_differ(tmp_path, cache_dir):
    runs = {}
    for name, seed in [("a", 5), ("b", 5), ("c", 7)]:
        args = [a for a in AC if "agent_base_seed" not in a]
        proc = run_cli([*args, f"seeding.agent_base_seed={seed}", "algorithm.n_epochs=3",
                        f"log_base_dir={tmp_path / name}"], tmp_path, cache_dir)
        assert proc.returncode == 0, proc.stderr
        runs[name] = (tables(proc.stdout), latest_theta(only_run_dir(tmp_path / name))[1]["learner"]["params"])
    assert runs["a"][0] == runs["b"][0]
    flat = lambda p: np.concatenate([np.ravel(x) for x in __import__("jax").tree.leaves(p)])
    np.testing.assert_array_equal(flat(runs["a"][1]), flat(runs["b"][1]))
    assert runs["a"][0] != runs["c"][0] and not np.array_equal(flat(runs["a"][1]), flat(runs["c"][1]))


@pytest.mark.cli
def test_ppo_two_epochs_plus_resume_equals_three_epochs(tmp_path, cache_dir):
    import jax

    assert run_cli([*AC, "algorithm.n_epochs=2", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir).returncode == 0
    resumed = run_cli([f"input_dir={only_run_dir(tmp_path / 'a')}", "algorithm.n_epochs=3",
                       f"log_base_dir={tmp_path / 'r'}"], tmp_path, cache_dir)
    straight = run_cli([*AC, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0 and straight.returncode == 0, resumed.stderr + straight.stderr
    _, r = latest_theta(only_run_dir(tmp_path / "r"))
    _, s = latest_theta(only_run_dir(tmp_path / "s"))
    for a, b in zip(jax.tree.leaves(r), jax.tree.leaves(s)):  # params, Adam moments, env states, RNG key
        np.testing.assert_array_equal(a, b)
    # the epoch trained after the resume logs exactly what the straight run logged for it
    last = lambda out: out[out.index("********** Iteration 2 **********"):].split("-> ")[0]
    assert tables(last(resumed.stdout)) == tables(last(straight.stdout))


ES = ["env=cartpole", "algorithm=es", "runner=dev", "algorithm.n_rollouts_per_update=8", "model.hidden_units=[16]",
      "seeding.agent_base_seed=5", "seeding.env_base_seed=6", "runner.stop_when_solved=false", "algorithm.max_steps=50"]


@pytest.mark.cli
@pytest.mark.parametrize("algorithm", ["ppo", "es"])
def test_a_chain_of_resumes_keeps_every_setting_and_equals_a_straight_run(algorithm, tmp_path, cache_dir):
    import jax
    from omegaconf import OmegaConf

    base = [*AC, "algorithm.lr=0.001", "algorithm.gamma=0.9"] if algorithm == "ppo" else \
        [*ES, "algorithm.optimizer.step_size=0.02", "algorithm.noise_stddev=0.05"]
    assert run_cli([*base, "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'g0'}"], tmp_path, cache_dir).returncode == 0
    for link in (1, 2):  # each link resumes the previous one, naming nothing but the epochs
        proc = run_cli([f"input_dir={only_run_dir(tmp_path / f'g{link - 1}')}", f"algorithm.n_epochs={link + 1}",
                        f"log_base_dir={tmp_path / f'g{link}'}"], tmp_path, cache_dir)
        assert proc.returncode == 0, proc.stderr[-2000:]
    straight = run_cli([*base, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 's'}"], tmp_path, cache_dir)
    assert straight.returncode == 0, straight.stderr[-2000:]
    last = OmegaConf.load(only_run_dir(tmp_path / "g2") / "hydra_config.yaml")
    if algorithm == "ppo":
        assert last.algorithm.lr == 0.001 and last.algorithm.gamma == 0.9  # the first link's settings
    else:
        assert last.algorithm.optimizer.step_size == 0.02 and last.algorithm.noise_stddev == 0.05
    (_, chained), (_, direct) = latest_theta(only_run_dir(tmp_path / "g2")), latest_theta(only_run_dir(tmp_path / "s"))
    for a, b in zip(jax.tree.leaves(chained), jax.tree.leaves(direct), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.cli
@pytest.mark.parametrize("algorithm, what", [("es", "rewards"), ("ppo", "observations")])
def test_nan_from_a_jax_env_stops_the_run_naming_the_env_data(algorithm, what, tmp_path, cache_dir):
    tests = Path(__file__).resolve().parent
    tiny = ["algorithm.n_rollouts_per_update=8"] if algorithm == "es" else \
        ["algorithm.n_rollout_steps=16", "algorithm.batch_size=16", "algorithm.epoch_length=2"]
    proc = run_cli(["env=gymnax", "env._target_=jax_envs.make_broken", f"+env.what={what}", "+env.after=2",
                    f"algorithm={algorithm}", "runner=dev", "model.hidden_units=[8]", *tiny,
                    f"log_base_dir={tmp_path}"], tests, cache_dir)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert f"Error: the env returned NaN or infinite {what} in" in proc.stderr and "in epoch 0" in proc.stderr
    assert "learning rate" not in proc.stderr and "Traceback" not in proc.stderr


def test_a_refused_command_leaves_no_run_directory(tmp_path, cache_dir):
    for args in (["algorithm.n_rollouts_per_update=7"], ["runner.final_eval_rollouts=0"], ["env=gymnax", "env.name=No"]):
        proc = run_cli([*args, f"log_base_dir={tmp_path}"], tmp_path, cache_dir)
        assert proc.returncode == 2 and "Compiling" not in proc.stdout, proc.stderr  # refused before compiling
        assert list(tmp_path.glob("*/*")) == [], list(tmp_path.rglob("*"))


@pytest.mark.cli
def test_runs_started_together_get_directories_of_their_own_and_a_held_one_is_refused(tmp_path, cache_dir, start):
    args = [*AC, "algorithm.n_epochs=1", f"log_base_dir={tmp_path / 'same'}"]
    procs = [start(args, tmp_path) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err[-2000:]
    assert len([p for p in (tmp_path / "same").glob("*/*") if (p / "checkpoints").is_dir()]) == 2
    held = tmp_path / "held"
    first = start([*AC, "algorithm.n_epochs=0", f"hydra.run.dir={held}"], tmp_path)
    wait_for(first, "Iteration 0 ")
    second = run_cli([*AC, "algorithm.n_epochs=1", f"hydra.run.dir={held}"], tmp_path, cache_dir)
    assert second.returncode == 2 and f"run directory {held} is in use by another run" in second.stderr
    first.send_signal(signal.SIGTERM)
    first.communicate(timeout=60)  # drains its output, so that it is not stuck writing to a full pipe
    assert first.returncode == 143
    assert (held / "hydra_config.yaml").is_file() and (held / "checkpoints").is_dir()  # the first run's files stay


@pytest.mark.cli
def test_paths_with_spaces_and_unicode_resume_and_refused_paths_are_one_line(tmp_path, cache_dir):
    run = tmp_path / "my runs ü" / "first"
    assert run_cli([*AC, "algorithm=ppo", "algorithm.n_epochs=1", f"hydra.run.dir='{run}'"], tmp_path,
                   cache_dir).returncode == 0
    resumed = run_cli([f"input_dir='{run}'", "algorithm.n_epochs=2", "algorithm.lr=0.001",
                       f"log_base_dir={tmp_path / 'r'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0 and f"Resumed {run} at epoch 1" in resumed.stdout, resumed.stderr[-2000:]
    (tmp_path / "a_file").write_text("")
    for bad in (tmp_path / "a_file" / "run", tmp_path / ("x" * 300)):
        proc = run_cli([*AC, "algorithm.n_epochs=1", f"hydra.run.dir={bad}"], tmp_path, cache_dir)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert "cannot be created" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.signals
def test_kill_9_in_the_middle_of_a_save_keeps_the_previous_checkpoint(tmp_path, cache_dir, start):
    """A deliberate pause between writing a checkpoint and renaming it into place: the kill lands in the save."""
    proc = start([*AC, "algorithm.n_epochs=0", "runner.checkpoint_every_s=0", f"log_base_dir={tmp_path / 'a'}"],
                 tmp_path, faults={"MAZE_JAX_TEST_SLOW_COMMIT": "1.5"})
    wait_for(proc, "Iteration 2 ")
    wait_for(proc, "committing checkpoint")
    proc.kill()
    proc.wait(timeout=30)
    run_dir = only_run_dir(tmp_path / "a")
    assert any(".orbax-checkpoint-tmp" in p.name for p in (run_dir / "checkpoints").iterdir())  # the cut save
    resumed = run_cli([f"input_dir={run_dir}", "algorithm.n_epochs=5", f"log_base_dir={tmp_path / 'b'}"], tmp_path,
                      cache_dir)
    assert resumed.returncode == 0 and "Resumed" in resumed.stdout, resumed.stderr[-2000:]


@pytest.mark.signals
def test_a_resumed_run_killed_in_its_first_save_resumes_from_the_epoch_it_had_reached(tmp_path, cache_dir, start):
    first = run_cli([*AC, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'a'}"], tmp_path, cache_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    parent = only_run_dir(tmp_path / "a")
    proc = start([f"input_dir={parent}", "algorithm.n_epochs=0", f"log_base_dir={tmp_path / 'b'}"], tmp_path,
                 faults={"MAZE_JAX_TEST_SLOW_COMMIT": "30"})
    wait_for(proc, "committing checkpoint")  # its first save: the best model it carries over
    wait_for(proc, "committing checkpoint")  # then its latest checkpoint, cut short
    proc.kill()
    proc.wait()
    killed = only_run_dir(tmp_path / "b")
    assert (killed / "best").is_dir()
    assert CheckpointDir(str(killed / "checkpoints"), read_only=True).latest_step() is None
    resumed = run_cli([f"input_dir={killed}", "algorithm.n_epochs=4", f"log_base_dir={tmp_path / 'c'}"], tmp_path,
                      cache_dir)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (f"Skipped checkpoints/ (no complete checkpoint: deleted, or its save was cut short): using "
            f"{parent / 'checkpoints' / '3'} (epoch 3)") in resumed.stdout
    assert f"Resumed {killed} at epoch 3 " in resumed.stdout


@pytest.mark.signals
def test_a_second_ctrl_c_waits_for_the_save_in_progress(tmp_path, cache_dir, start):
    proc = start([*AC, "algorithm.n_epochs=0", "runner.checkpoint_every_s=1000", f"log_base_dir={tmp_path}"],
                 tmp_path, faults={"MAZE_JAX_TEST_SLOW_COMMIT": "2"})
    wait_for(proc, "Iteration 3 ")
    proc.send_signal(signal.SIGINT)
    wait_for(proc, "committing checkpoint")  # the final save has begun
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert "SIGINT again: saving the latest checkpoint (epoch" in err and "Traceback" not in err
    epoch, _ = latest_theta(only_run_dir(tmp_path))
    assert epoch >= 4  # the epochs trained, saved despite the second Ctrl-C


@pytest.mark.signals
def test_ctrl_c_while_compiling_or_in_the_final_evaluation_is_one_line(tmp_path, cache_dir, start):
    compiling = start([*AC, "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'a'}"], tmp_path,
                      cache_dir=str(tmp_path / "empty_cache"))
    wait_for(compiling, "Compiling")
    compiling.send_signal(signal.SIGINT)
    _, err = compiling.communicate(timeout=120)
    assert compiling.returncode == 130 and "SIGINT before training started: nothing saved" in err, err[-2000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    final = start([*AC, "algorithm.n_epochs=1", "runner.final_eval_rollouts=1000000", f"log_base_dir={tmp_path / 'b'}"],
                  tmp_path)
    wait_for(final, "Iteration 0 ")
    time.sleep(1.0)  # into the (long) final evaluation
    final.send_signal(signal.SIGINT)
    _, err = final.communicate(timeout=120)
    assert final.returncode == 130 and "during the final evaluation: the checkpoints are complete" in err, err[-2000:]
    assert "Traceback" not in err and latest_theta(only_run_dir(tmp_path / "b"))[0] == 1


@pytest.mark.signals
@pytest.mark.parametrize("where, args", [
    ("epoch", ["algorithm.epoch_length=1000000"]),  # one compiled epoch of many minutes
    ("evaluation", ["env=gymnax", "env.name=Pendulum-v1", "env.max_episode_steps=100000000",  # episodes that
                    "algorithm.epoch_length=1", "runner.n_eval_rollouts=1"]),  # never end within minutes
])
def test_a_signal_takes_effect_within_seconds_while_a_long_compiled_program_runs(where, args, tmp_path, start):
    proc = start([*AC, *args, "algorithm.n_epochs=0", "runner.progress_interval_s=1", f"log_base_dir={tmp_path}"],
                 tmp_path)
    wait_for(proc, "running for 2")  # the progress line, two seconds into the long program
    sent = time.time()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and time.time() - sent < 5, (time.time() - sent, err[-2000:])
    assert "SIGTERM: saving the latest checkpoint (epoch 0)" in err and "Traceback" not in err
    assert latest_theta(only_run_dir(tmp_path))[0] == 0


@pytest.mark.signals
def test_stopping_exits_with_its_status_every_time(tmp_path, cache_dir, start):
    for attempt in range(5):  # a crash in the interpreter's teardown once turned some of these into 139
        proc = start([*AC, "algorithm.n_epochs=0", f"log_base_dir={tmp_path / str(attempt)}"], tmp_path)
        wait_for(proc, "Iteration 1 ")
        proc.send_signal(signal.SIGINT if attempt % 2 else signal.SIGTERM)
        proc.communicate(timeout=60)
        assert proc.returncode == (130 if attempt % 2 else 143), attempt


@pytest.mark.cli
@pytest.mark.parametrize("free_kb", [20, 60, 400])  # before the first save, in the first, after a few
def test_a_disk_that_fills_up_is_one_line_and_exit_5_wherever_it_happens(free_kb, small_disk, tmp_path, cache_dir):
    with open(small_disk / "filler", "wb") as f:
        f.write(b"\0" * ((3072 - free_kb) * 1024))
    proc = run_cli([*AC, "algorithm.n_epochs=0", "runner.dump_interval=1", "runner.checkpoint_every_s=0",
                    f"log_base_dir={small_disk / 'runs'}"], tmp_path, cache_dir)
    assert proc.returncode == 5, proc.stderr[-3000:]
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("Error: could not write "), proc.stderr[-3000:]
    assert "[Errno 28] No space left on device" in proc.stderr and str(small_disk / "runs") in proc.stderr


@pytest.mark.cli
def test_a_full_disk_is_one_line_naming_the_path_and_the_previous_checkpoint_survives(tmp_path, cache_dir, start):
    proc = start([*AC, "algorithm.n_epochs=0", "runner.checkpoint_every_s=0", f"log_base_dir={tmp_path / 'a'}"],
                 tmp_path, faults={"MAZE_JAX_TEST_FAIL_COMMIT": "3"})
    _, err = proc.communicate(timeout=120)
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 5 and len(errors) == 1, err[-2000:]
    assert "could not write the checkpoint of epoch" in errors[0] and "[Errno 28] No space left on device" in errors[0]
    assert str(tmp_path / "a") in errors[0] and "Traceback" not in err
    resumed = run_cli([f"input_dir={only_run_dir(tmp_path / 'a')}", "algorithm.n_epochs=4",
                       f"log_base_dir={tmp_path / 'b'}"], tmp_path, cache_dir)
    assert resumed.returncode == 0 and "Resumed" in resumed.stdout, resumed.stderr[-2000:]
