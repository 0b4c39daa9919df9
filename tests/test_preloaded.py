"""The suite's preloaded process (tests/preloaded.py) runs a command as a fresh `python -m` process does."""

import os
import signal
import subprocess
import sys

import pytest

from conftest import command_env, finish
from preloaded import Server


@pytest.fixture(scope="module")
def server():
    server = Server(command_env())
    yield server
    server.close()


def run(server: Server, module: str, argv: list[str], cwd, timeout: float) -> subprocess.CompletedProcess:
    return finish(server.popen(module, argv, cwd), timeout)


def fresh(module: str, argv: list[str], cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=command_env(), capture_output=True,
                          text=True, timeout=120)


@pytest.mark.parametrize("module, argv", [("maze_jax.train", ["--help"]), ("maze_jax.train", ["algoritm.lr=1"]),
                                          ("maze_jax.rollout", ["policy=nonexistent_policy"])])
def test_a_forked_command_says_and_exits_as_a_fresh_process(server, module, argv, tmp_path):
    forked, new = run(server, module, argv, tmp_path, 120), fresh(module, argv, tmp_path)
    assert (forked.returncode, forked.stdout, forked.stderr) == (new.returncode, new.stdout, new.stderr)
    assert forked.stdout or forked.stderr


def test_the_child_runs_in_the_given_folder_with_it_first_on_the_path(server, tmp_path):
    (tmp_path / "where_am_i.py").write_text(
        "import os, sys\nprint(os.getcwd(), sys.path[0], sys.argv[1:], os.getppid() != os.getpid())\n"
        "sys.exit(7)\n")
    forked = run(server, "where_am_i", ["a", "b=1"], tmp_path, 60)
    assert forked.returncode == 7, forked.stderr
    assert forked.stdout.split() == [str(tmp_path), str(tmp_path), "['a',", "'b=1']", "True"]


def test_a_signal_that_ends_the_child_is_its_negative_status_and_a_timeout_kills_it(server, tmp_path):
    (tmp_path / "ends_itself.py").write_text("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert run(server, "ends_itself", [], tmp_path, 60).returncode == -signal.SIGKILL
    (tmp_path / "sleeps.py").write_text("import time\ntime.sleep(600)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run(server, "sleeps", [], tmp_path, 3)


def test_an_uncaught_exception_is_a_traceback_and_status_1(server, tmp_path):
    (tmp_path / "fails.py").write_text("raise ValueError('boom')\n")
    forked = run(server, "fails", [], tmp_path, 60)
    assert forked.returncode == 1 and "ValueError: boom" in forked.stderr and "Traceback" in forked.stderr
    assert os.path.isdir(tmp_path)


def test_a_started_child_streams_its_output_and_takes_signals(server, tmp_path):
    (tmp_path / "sleeps.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(600)\n")
    child = server.popen("sleeps", [], tmp_path)
    assert next(iter(child.stdout)) == "started\n" and child.poll() is None
    child.send_signal(signal.SIGTERM)
    assert child.wait(30) == -signal.SIGTERM and child.poll() == -signal.SIGTERM
    another = server.popen("sleeps", [], tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        another.wait(1)
    another.kill()
    assert another.wait(30) == -signal.SIGKILL
