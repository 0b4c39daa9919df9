"""`runner=ray`: Python envs on Ray workers. End to end from the CLI (PPO with resumes across runners, ES with a
rollout), RunContext inside a caller's Ray, the layout of the workers' rollouts, ES slices, a worker killed mid-run,
more failures than allowed, and SIGTERM leaving a checkpoint and no process behind. Skipped without the extra."""

from __future__ import annotations

import os
import signal
import time

import jax
import numpy as np
import pytest

from conftest import REPO, start_cli
from maze_jax.shell.collectors import reaper
from test_devices import free_port
from test_cli import only_run_dir
from test_python_cli import TESTS, TINY, run_tests_cli

pytestmark = pytest.mark.extra

pytest.importorskip("ray", reason='runner=ray needs the ray extra: pip install ".[ray]"')

ON_RAY = ["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0", "runner=ray", "model.hidden_units=[8]",
          "runner.stop_when_solved=false", "runner.num_workers=2", "runner.envs_per_worker=2",
          "runner.n_eval_rollouts=2", "runner.final_eval_rollouts=2", "runner.table=compact"]
COUNTDOWN = [*ON_RAY, "algorithm=ppo", *TINY["ppo"]]


def _missing_on_the_worker():
    raise ImportError("No module named 'simulator'")


class BuiltOnlyHere:
    """An argument that cannot be rebuilt in a worker (as an env whose code is not installed on the node)."""

    def __reduce__(self):
        return _missing_on_the_worker, ()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_each_worker_plays_whole_antithetic_pairs_of_one_even_slice():
    from maze_jax.shell.collectors.ray_workers import member_slices

    slices = member_slices(n_seeds=2, population=8, n_workers=3)
    assert sorted(m for s in slices for m in s) == list(range(16))
    for members in slices:
        assert all((m + 4 if m % 8 < 4 else m - 4) in members for m in members)  # the pair's other half
    assert [len(s) for s in slices] == [6, 6, 4]
    assert member_slices(1, 4, 3)[2] == []  # more workers than pairs: one idles


def test_ray_rollouts_and_runcontext_in_a_callers_ray(tmp_path):
    """Worker w holds envs w*m ... of seed w // (workers / seeds): the joined rollout is laid out as the local
    collector's (seeds first, then envs), and a caller's Ray is left running when the run ends."""
    import ray

    import python_envs  # noqa: F401  (registers the Countdown env)
    from conftest import init_state, make_trainer
    from maze_jax.api import RunContext
    from maze_jax.shell.collectors.host import RolloutCollector
    from maze_jax.collectors import EnvFailed
    from maze_jax.shell.collectors.ray_workers import RayRollouts, RayWorkers
    from maze_jax.shell.settings import RaySettings

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)])}})
    try:
        for model in (["model.hidden_units=[8]"], ["model=vector_obs_rnn", "model.hidden_units=[8]",
                                                   "model.memory_units=4"]):
            spec, trainer = make_trainer(["env=gymnasium", "env.name=python_envs:MazeJaxTest/Countdown-v0",
                                          "algorithm=ppo", "+env.kwargs.length=5", *model])
            algorithm = trainer.algorithm
            params = jax.tree.map(lambda x: np.stack([x, x]), init_state(trainer).learner.params)
            ours = RayRollouts(algorithm, spec, 7, 2, 100, "sync", RaySettings(num_workers=4, envs_per_worker=3))
            local = RolloutCollector(algorithm, spec, 6, 7, 2, 100, "sync")
            try:
                assert ours.workers.env_steps == 0
                got, ended, _, steps = ours.collect(params, jax.random.split(jax.random.key(0), 2))
                assert steps == ours.workers.env_steps == 2 * 7 * 6  # counted as the workers' rollouts arrive
                want, want_ended, _, _ = local.collect(params, jax.random.split(jax.random.key(0), 2))
            finally:
                ours.close(), local.close()
            assert got.obs.shape == want.obs.shape == (2, 7, 6, 1) and got.last_obs.shape == (2, 6, 1)
            for field in ("obs", "terminated", "truncated", "final_obs", "last_obs"):  # the same envs, seeded alike
                np.testing.assert_array_equal(getattr(got, field), getattr(want, field), err_msg=field)
            assert sorted(e[0] for e in ended) == sorted(e[0] for e in want_ended)
            for got_memory, want_memory in zip(jax.tree.leaves(got.memory), jax.tree.leaves(want.memory)):
                assert got_memory.shape == (2, 7, 6, 4)  # the memory each step was acted with, time-major
                np.testing.assert_allclose(got_memory, want_memory, rtol=1e-6)
            assert bool(jax.tree.leaves(want.memory)) == ("model=vector_obs_rnn" in model)
        assert ray.is_initialized()
        with pytest.raises(EnvFailed, match="a worker could not start: .*No module named 'simulator'"):
            RayWorkers(RaySettings(num_workers=1, max_worker_restarts=0),
                       lambda w: (BuiltOnlyHere(), spec, 1, 0, "sync", 1))

        context = RunContext(env={"name": "python_envs:MazeJaxTest/Countdown-v0"}, algorithm="es", runner="ray",
                             overrides={"env": "gymnasium", "algorithm.n_rollouts_per_update": 8,
                                        "runner.num_workers": 2, "runner.envs_per_worker": 2,
                                        "runner.n_eval_rollouts": 2, "runner.final_eval_rollouts": 2,
                                        "model.hidden_units": [8], "runner.stop_when_solved": False},
                             run_dir=str(tmp_path / "run"), echo=lambda *a, **k: None)
        final = context.train(n_epochs=2)
        assert final["final_BaseEnvEvents/reward/mean"] >= 3.0  # 3 steps paying 1 + action each
        assert context.compute_action(np.array([3.0], np.float32)) in (0, 1)
        assert ray.is_initialized() and not ray.util.list_named_actors()

        # a long epoch's progress: the workers' env steps, counted as their rollouts arrive, from 0 each epoch
        _, trainer = make_trainer([*COUNTDOWN, "runner.policy_lag=0", "algorithm.epoch_length=2"])
        state = init_state(trainer)
        try:
            for _ in range(2):
                seen = []
                state, metrics = trainer.train_epoch(state, lambda: seen.append(trainer.epoch_env_steps()) or False)
                steps = int(np.sum(metrics["train_BaseEnvEvents/reward/step_count"]))
                assert seen[0] == 0 and seen == sorted(seen) and steps // 2 <= seen[-1] < steps
                assert trainer.epoch_env_steps() == steps
        finally:
            trainer.close()
    finally:
        ray.shutdown()


def test_ppo_on_ray_resumes_with_the_local_runner_and_back_and_es_rolls_out(tmp_path, cache_dir):
    first = run_tests_cli([*COUNTDOWN, "algorithm.n_epochs=1"], tmp_path / "a", cache_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Ray: 2 env workers on a local Ray" in first.stdout and "epoch    1 |" in first.stdout
    assert "Traceback" not in first.stderr
    run = only_run_dir(tmp_path / "a")
    assert run.parent.name.endswith("-ppo-ray")
    named = "env.name=python_envs:MazeJaxTest/Countdown-v0"  # the run's env module, named (a run directory is data)
    local = run_tests_cli([f"input_dir={run}", named, "runner=local", "runner.concurrency=4", "algorithm.n_epochs=2",
                           "runner.table=compact"], tmp_path / "b", cache_dir)
    assert local.returncode == 0, local.stderr[-3000:]
    assert f"Resumed {run} at epoch 1" in local.stdout and "Ray:" not in local.stdout
    back = run_tests_cli([f"input_dir={only_run_dir(tmp_path / 'b')}", named, "runner=ray", "runner.num_workers=1",
                          "runner.envs_per_worker=4", "algorithm.n_epochs=3", "runner.table=compact"],
                         tmp_path / "c", cache_dir)
    assert back.returncode == 0, back.stderr[-3000:]
    assert "at epoch 2" in back.stdout and "epoch    3 |" in back.stdout
    assert "Ray: 1 env worker on a local Ray" in back.stdout

    es = run_tests_cli([*ON_RAY, "algorithm=es", *TINY["es"], "algorithm.n_epochs=2"], tmp_path / "e",
                       cache_dir)
    assert es.returncode == 0, es.stderr[-3000:]
    assert "epoch    2 |" in es.stdout and "Final evaluation" in es.stdout
    rollout = run_tests_cli([f"input_dir={only_run_dir(tmp_path / 'e')}", named, "runner.n_episodes=2"], tmp_path / "r",
                            cache_dir, module="maze_jax.rollout")
    assert rollout.returncode == 0, rollout.stderr[-3000:]


@pytest.mark.parametrize("algorithm", ["sac", "impala"])
def test_off_policy_learners_train_on_ray_workers(algorithm, tmp_path, cache_dir):
    proc = run_tests_cli([*ON_RAY, f"algorithm={algorithm}", *TINY[algorithm], "algorithm.n_epochs=2"], tmp_path,
                         cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Ray: 2 env workers on a local Ray" in proc.stdout and "epoch    2 |" in proc.stdout
    assert "Final evaluation" in proc.stdout and "Traceback" not in proc.stderr


def test_a_killed_worker_is_restarted_and_too_many_failures_stop_the_run_in_one_line(tmp_path, cache_dir):
    once = tmp_path / "died"
    proc = run_tests_cli([*COUNTDOWN, "algorithm.n_epochs=3", "+env.kwargs.die_at=100",
                          f"+env.kwargs.die_once_file={once}"], tmp_path / "a", cache_dir)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert once.exists() and "Ray restarts it and its share is collected again (1 of" in proc.stderr
    assert "epoch    3 |" in proc.stdout and "Traceback" not in proc.stderr

    proc = run_tests_cli([*COUNTDOWN, "algorithm.n_epochs=50", "+env.kwargs.die_at=200",
                          "runner.max_worker_restarts=1"], tmp_path / "b", cache_dir)
    assert proc.returncode == 4, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "more than runner.max_worker_restarts=1" in errors[0], proc.stderr[-2000:]
    assert "The last good state (epoch" in errors[0] and "Traceback" not in proc.stderr
    assert (only_run_dir(tmp_path / "b") / "checkpoints").is_dir()


def test_an_env_that_stops_answering_on_a_worker_ends_the_run_in_one_line(tmp_path, cache_dir):
    proc = run_tests_cli([*COUNTDOWN, "algorithm.n_epochs=50", "+env.kwargs.hang_at=60", "runner.env_step_timeout_s=2"],
                         tmp_path, cache_dir)
    assert proc.returncode == 4, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "did not return from step within 2 s (vector step" in errors[0], proc.stderr[-2000:]
    assert "Ray worker" in errors[0] and "Traceback" not in proc.stderr
    assert (only_run_dir(tmp_path) / "checkpoints").is_dir()


@pytest.mark.parametrize("address, why", [("bogus.invalid:6379", "the host 'bogus.invalid' is unknown"),
                                          ("127.0.0.1:{port}", "nothing answered there within 2 s"),
                                          ("ray://127.0.0.1:{port}", "nothing answered there within 2 s"),
                                          ("localhost", "'localhost' is not host:port")])
def test_a_bad_or_unreachable_address_is_one_line_exit_2_and_no_run_directory(address, why, tmp_path, cache_dir):
    address = address.format(port=free_port())
    started = time.time()
    proc = run_tests_cli([*COUNTDOWN, f"runner.address={address}", "runner.start_timeout_s=2"], tmp_path, cache_dir)
    assert proc.returncode == 2 and time.time() - started < 60, proc.stderr[-3000:]
    assert proc.stderr == (f"Error: runner.address={address}: no Ray cluster answers there ({why}"
                           f"{' (Connection refused)' if 'answered' in why else ''}); start one (ray start --head) "
                           "or leave runner.address empty for a local Ray\n")
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


def test_a_ray_client_address_trains_on_that_cluster(tmp_path, cache_dir):
    import subprocess
    import sys

    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    gcs, client = free_port(), free_port()
    env = {**os.environ, "RAY_DISABLE_USAGE_STATS": "1"}
    subprocess.run([ray, "start", "--head", f"--port={gcs}", f"--ray-client-server-port={client}", "--num-cpus=2",
                    "--include-dashboard=false"], check=True, capture_output=True, env=env, timeout=120)
    try:
        # an env the cluster's workers can import (a module of one's own needs Ray's runtime_env there)
        cartpole = [a for a in COUNTDOWN if not a.startswith("env.name=")] + ["env.name=CartPole-v1"]
        proc = run_tests_cli([*cartpole, "algorithm.n_epochs=1", f"runner.address=ray://127.0.0.1:{client}"],
                             tmp_path, cache_dir)
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"Ray: 2 env workers on the Ray cluster at ray://127.0.0.1:{client}" in proc.stdout
    assert "Final evaluation" in proc.stdout and "Traceback" not in proc.stderr


def running_on_ray(tmp_path, cache_dir):
    """A long PPO run on two Ray workers, once it trained its first epoch: (its process, every process below it)."""
    proc = start_cli([*COUNTDOWN, "algorithm.n_epochs=1000", "+env.kwargs.sleep_s=0.01", f"log_base_dir={tmp_path}",
                      f"compilation_cache_dir={cache_dir}"], TESTS)
    try:
        seen, deadline = "", time.time() + 120
        while "epoch    1 |" not in seen and time.time() < deadline:
            seen += proc.stdout.readline()
        assert "epoch    1 |" in seen, seen
        below = list(reaper.descendants(proc.pid))
        assert len(below) >= 3  # Ray's services and the two workers
    except BaseException:
        proc.kill()
        raise
    return proc, below


def test_sigterm_keeps_a_checkpoint_and_leaves_no_ray_process(tmp_path, cache_dir):
    proc, below = running_on_ray(tmp_path, cache_dir)
    try:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 143, err[-3000:]
    assert "SIGTERM: saving the latest checkpoint" in err and "Traceback" not in err
    assert (only_run_dir(tmp_path) / "checkpoints").is_dir()
    time.sleep(1)
    assert not [p for p in below if alive(p)], "Ray processes outlived the run"


def test_kill_9_of_the_run_leaves_no_ray_process(tmp_path, cache_dir):
    proc, below = running_on_ray(tmp_path, cache_dir)
    proc.kill()  # no code of the run can clean up: the reaper does
    proc.wait()
    deadline = time.time() + 30
    while [p for p in below if alive(p)] and time.time() < deadline:
        time.sleep(0.5)
    assert not [p for p in below if alive(p)], "Ray processes outlived the killed run"
