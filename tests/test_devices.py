"""Scale-out: the batch split over forced CPU devices gives the one-device results; two processes train together."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from maze_jax.config import ConfigError
from maze_jax.collectors.devices import check_divisible

# Runs in a fresh interpreter: the device count is fixed when jax starts.
SAME_RESULTS = textwrap.dedent("""
    import jax, numpy as np
    from maze_jax.collectors import policy_params
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings
    from maze_jax.shell.programs import compile_programs
    assert jax.device_count() == 4
    CASES = {"es": ["algorithm.n_rollouts_per_update=16", "algorithm.max_steps=100"],
             "ppo": ["runner.concurrency=8", "algorithm.n_rollout_steps=16", "algorithm.batch_size=32",
                     "algorithm.epoch_length=2"]}
    for algorithm, extra in CASES.items():
        results = {}
        for n_devices in (1, 4):
            cfg, _ = compose_config([f"algorithm={algorithm}", f"runner.n_devices={n_devices}",
                                     "model.hidden_units=[16]", *extra])
            _, trainer = build(read_settings(cfg))
            programs = compile_programs(trainer, jax.random.key(0), echo=lambda *a, **k: None)
            state = programs.init(jax.random.key(0), jax.random.key(1))
            for _ in range(2):
                state, metrics = programs.train_epoch(state)
            hlo = programs.train_epoch.as_text()
            results[n_devices] = jax.device_get((policy_params(state), metrics)), hlo, state
        (params1, metrics1), hlo1, _ = results[1]
        (params4, metrics4), hlo4, state4 = results[4]
        for a, b in zip(jax.tree.leaves(params1), jax.tree.leaves(params4)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
        for tag in metrics1:
            np.testing.assert_allclose(metrics1[tag], metrics4[tag], rtol=1e-5, atol=1e-6, err_msg=tag)
        # the batch really is split: each device holds a quarter of it, and XLA sums across devices
        quarter = "f32[4,4,16]" if algorithm == "es" else "f32[2,4]"  # 4 of 16 members' kernels; 2 of 8 envs' obs
        whole = "f32[16,4,16]" if algorithm == "es" else "f32[8,4]"
        assert quarter in hlo4 and "all-reduce" in hlo4, algorithm
        assert whole in hlo1 and "all-reduce" not in hlo1, algorithm
        assert len(jax.tree.leaves(state4)[0].sharding.device_set) == 4
        print(algorithm, "same on 1 and 4 devices")
""")


@pytest.mark.cli
def test_four_devices_give_the_one_device_results_with_the_batch_split():
    env = {**os.environ, "PYTHONPATH": str(REPO), "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    proc = subprocess.run([sys.executable, "-c", SAME_RESULTS], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "es same" in proc.stdout and "ppo same" in proc.stdout


def test_a_batch_that_does_not_split_is_refused():
    class Mesh4:
        size = 4

    check_divisible(8, Mesh4(), "runner.concurrency")
    with pytest.raises(ConfigError, match="runner.concurrency=6 does not split over 4 devices"):
        check_divisible(6, Mesh4(), "runner.concurrency")
    check_divisible(6, None, "runner.concurrency")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_two_processes(args: list[str], cwd, cache_dir: str) -> list[subprocess.CompletedProcess]:
    """The same command in two processes joined through jax.distributed on 127.0.0.1."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1", "TMPDIR": str(Path(cwd) / "tmp")}
    env.pop("XLA_FLAGS", None)
    (Path(cwd) / "tmp").mkdir(exist_ok=True)
    procs = [subprocess.Popen([sys.executable, "-m", "maze_jax.train", "runner=distributed",
                               f"runner.coordinator_address=127.0.0.1:{port}", "runner.num_processes=2",
                               f"runner.process_id={i}", f"compilation_cache_dir={cache_dir}", *args],
                              cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    try:
        outs = [p.communicate(timeout=300) for p in procs]
    finally:
        for p in procs:
            p.kill()
    return [subprocess.CompletedProcess(p.args, p.returncode, o, e) for p, (o, e) in zip(procs, outs)]


@pytest.mark.cli
def test_two_processes_train_together_and_resume_and_only_process_0_writes(tmp_path, cache_dir):
    small = ["env=cartpole", "algorithm=ppo", "runner.concurrency=4", "algorithm.n_rollout_steps=32",
             "algorithm.batch_size=32", "algorithm.epoch_length=2", "runner.final_eval_rollouts=8",
             "runner.stop_when_solved=false", f"log_base_dir={tmp_path / 'runs'}"]
    first = run_two_processes([*small, "algorithm.n_epochs=2"], tmp_path, cache_dir)
    for i, proc in enumerate(first):
        assert proc.returncode == 0, (i, proc.stderr[-3000:])
    leader, other = first
    assert "Waiting for 2 processes to join at 127.0.0.1:" in leader.stdout  # said while the peers join
    assert "Devices: 2 x cpu in 2 processes, batch split 2 ways" in leader.stdout
    assert "All 2 processes held the same training state after every epoch" in leader.stdout
    assert "Iteration" not in other.stdout  # process 1 prints no table
    runs = list((tmp_path / "runs").glob("*/*"))
    assert len(runs) == 1 and (runs[0] / "best").is_dir() and (runs[0] / "checkpoints").is_dir()
    assert not (tmp_path / "outputs").exists()
    assert not list((tmp_path / "tmp").glob("maze_jax_process_*"))  # process 1's folder for Hydra is gone
    # every process resumes from process 0's checkpoint
    second = run_two_processes([f"input_dir={runs[0]}", "algorithm.n_epochs=3", f"log_base_dir={tmp_path / 'runs'}"],
                               tmp_path, cache_dir)
    for i, proc in enumerate(second):
        assert proc.returncode == 0, (i, proc.stderr[-3000:])
    assert "at epoch 2" in second[0].stdout and "Iteration 2" in second[0].stdout
    assert "All 2 processes held the same training state" in second[0].stdout
    assert len(list((tmp_path / "runs").glob("*/*"))) == 2


def test_an_unreachable_coordinator_is_one_line_and_exit_2(tmp_path, cache_dir):
    address = f"127.0.0.1:{free_port()}"  # nobody listens there
    proc = run_cli(["runner=distributed", "runner.num_processes=2", "runner.process_id=1",
                    f"runner.coordinator_address={address}", "runner.initialization_timeout_s=2",
                    f"log_base_dir={tmp_path}"], tmp_path, cache_dir, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"could not reach the coordinator {address} (process 0): nothing answered there within 2 s" in proc.stderr
    assert f"Waiting for 2 processes to join at {address} (process 1; up to 2 s" in proc.stdout
    assert "Traceback" not in proc.stderr


@pytest.mark.cli
def test_a_repeated_run_takes_every_program_from_the_cache(tmp_path):
    args = ["env=cartpole", "algorithm=ppo", "runner=dev", "algorithm.n_epochs=1", "algorithm.epoch_length=1",
            "model.hidden_units=[24]", f"log_base_dir={tmp_path}"]
    cache = tmp_path / "fresh_cache"
    first = run_cli(args, tmp_path, str(cache))
    after_first = sorted(path.name for path in cache.iterdir())
    second = run_cli(args, tmp_path, str(cache))
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    # the cache keeps one entry per program the first run compiled (its epoch, evaluation and init among them) ...
    programs = ("jit_train_epoch-", "jit_evaluate_state-", "jit_init-")
    assert sum(name.startswith(programs) for name in after_first) == 3, after_first
    # ... and the second run compiled none anew: a program missed in the cache would have added its entry
    assert sorted(path.name for path in cache.iterdir()) == after_first
    breakdown = re.search(r"Compiled in ([\d.]+) s \(init ([\d.]+), epoch ([\d.]+), evaluation ([\d.]+)\)",
                          first.stdout)
    assert breakdown, first.stdout  # the run log says what each program took
    total, *parts = (float(x) for x in breakdown.groups())
    assert max(parts) <= total + 0.05  # each part within the whole (the epoch and evaluation overlap the setup)


def test_cpu_flags_are_left_out_where_jax_runs_on_an_accelerator(monkeypatch):
    from maze_jax import xla_flags

    monkeypatch.setattr(xla_flags, "_late", [])  # this process's backend runs: the calls below note flags as late
    for platforms, on_cpu in (("cpu", True), ("cuda", False), ("tpu,cpu", False), ("cpu,cuda", True)):
        monkeypatch.setenv("JAX_PLATFORMS", platforms)
        monkeypatch.setenv("XLA_FLAGS", "--xla_dump_to=/tmp/x")
        xla_flags.apply_defaults()
        assert ("xla_cpu_multi_thread_eigen" in os.environ["XLA_FLAGS"]) == on_cpu, platforms
        assert "--xla_dump_to=/tmp/x" in os.environ["XLA_FLAGS"]
    monkeypatch.delenv("JAX_PLATFORMS")
    monkeypatch.setattr(xla_flags.importlib.util, "find_spec", lambda name: name == "jax_cuda12_plugin" or None)
    assert not xla_flags.runs_on_cpu()  # a GPU plugin installed: JAX picks the GPU


def test_ray_workers_keep_the_users_xla_flags_and_add_their_defaults(monkeypatch):
    """A worker compiles as this process does (the same LLVM level gives the same float rounding as the local
    collector) and adds its defaults where the user set nothing; the user's value of a default stays."""
    from maze_jax.shell.collectors.ray_workers import worker_env

    monkeypatch.setenv("XLA_FLAGS", "--xla_backend_optimization_level=0")
    env = worker_env()
    assert env["JAX_PLATFORMS"] == "cpu"
    assert env["XLA_FLAGS"].split() == ["--xla_backend_optimization_level=0", "--xla_cpu_multi_thread_eigen=false"]
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    assert worker_env()["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=true"
    monkeypatch.delenv("XLA_FLAGS")
    assert worker_env()["XLA_FLAGS"] == "--xla_cpu_multi_thread_eigen=false"  # every token a flag XLA knows


INLINE_PROBE = """
import sys
from maze_jax import xla_flags
set_before = xla_flags.run_programs_inline() if sys.argv[1] == "inline" else False
import jax, jax.numpy as jnp
f = jax.jit(lambda w: jax.lax.fori_loop(0, 400, lambda i, x: jnp.tanh(x @ w), w))  # a fraction of a second of matmuls
w = jnp.full((256, 256), 0.01)
f(w).block_until_ready()
print(set_before, xla_flags.run_programs_inline(), f(w).is_ready())
"""


@pytest.mark.parametrize("mode, expected", [("inline", "True False True"), ("default", "False False False")])
def test_cpu_programs_run_in_the_calling_thread_once_set_before_the_backend_starts(mode, expected):
    """With run_programs_inline() before JAX's backend starts, a call of a compiled program returns when the
    program is done (it ran in the calling thread); without it, JAX returns at once and computes on a pool
    thread. Once the backend runs, the setting can no longer take effect, and the call says so (False)."""
    proc = subprocess.run([sys.executable, "-c", INLINE_PROBE, mode], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.stdout.split() == expected.split(), proc.stderr[-2000:]


def test_init_compiled_for_a_quick_compile_gives_the_same_state():
    import jax
    import numpy as np

    from conftest import make_trainer
    from maze_jax.shell.programs import compile_programs

    _, trainer = make_trainer(["env=cartpole", "algorithm=ppo", "model.hidden_units=[16]"])
    key = jax.random.key(3)
    quick = compile_programs(trainer, key, echo=lambda *a, **k: None).init(key, jax.random.key(4))
    # as XLA compiles by default (the suite's own XLA_FLAGS compile as RUNS_ONCE does: tests/conftest.py)
    default = {"xla_backend_optimization_level": 3, "xla_cpu_use_fusion_emitters": True}
    plain = jax.jit(trainer.init).lower(key, key).compile(compiler_options=default)(key, jax.random.key(4))
    for a, b in zip(jax.tree.leaves(quick), jax.tree.leaves(plain)):
        a, b = (jax.random.key_data(x) if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key) else x for x in (a, b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)  # float rounding only
