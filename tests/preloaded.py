"""A process that imports the commands' libraries once and forks a child for each command a test runs.

A command's process spends 2 to 3 s importing jax, flax, gymnax, Hydra and Orbax on a 2-core CPU before it does
anything; the suite starts about 190 of them. A child forked from this process starts with those modules loaded,
and is otherwise the command as a user runs it: its own process (pid, exit status, signals), `python -m MODULE
ARGS` run by `runpy` with the test's arguments, working directory and output pipes.

Only commands in the suite's standard environment come here (`conftest.start_cli`); a test that sets its own
environment (XLA flags, a fault-injecting `sitecustomize`) starts a real `python -m` process, and so do the tests
of the console scripts, the example scripts and the import order.

The server: `python tests/preloaded.py SOCKET`. A request on the Unix socket is one JSON message {"argv", "cwd",
"module"} sent with the write ends of the child's stdout and stderr pipes; the server answers the child's pid, then
its exit status (negative: the signal that ended it), each on a line. JAX's backend is never started here (forking
a process whose XLA threads run is unsafe): importing JAX starts no thread.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

PRELOAD = ("maze_jax.train", "maze_jax.rollout", "maze_jax.shell.session", "maze_jax.envs", "orbax.checkpoint",
           "tensorboardX", "hydra._internal.hydra")


def serve(path: str) -> None:
    """Imports PRELOAD and answers requests on the Unix socket `path` until the socket is closed."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import jax._src.xla_bridge as xla_bridge

    assert not xla_bridge._backends, "a preloaded module started JAX's backend; forking would be unsafe"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(16)
    print("ready", flush=True)
    while True:
        connection, _ = listener.accept()
        message, fds, _, _ = socket.recv_fds(connection, 1 << 16, 2)
        request = json.loads(message)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            listener.close()
            connection.close()
            run_child(request, *fds)
        for fd in fds:
            os.close(fd)
        connection.sendall(f"{pid}\n".encode())
        threading.Thread(target=report_exit, args=(connection, pid), daemon=True).start()


def run_child(request: dict, stdout_fd: int, stderr_fd: int) -> None:
    """In the forked child: `python -m MODULE ARGV` in `cwd` with the given output pipes. Never returns."""
    import runpy

    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(stdout_fd, 1)
        os.dup2(stderr_fd, 2)
        for fd in (devnull, stdout_fd, stderr_fd):
            os.close(fd)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.chdir(request["cwd"])
        sys.path[0] = os.getcwd()  # as `python -m` puts it
        sys.argv = [request["module"], *request["argv"]]
        forget(request["module"])
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, (int, type(None))):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported like Python reports an uncaught exception
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def forget(module: str) -> None:
    """Unloads preloaded `module`, which `python -m` runs as `__main__` without importing it first."""
    if sys.modules.pop(module, None) is not None and "." in module:
        parent, name = module.rsplit(".", 1)
        if hasattr(sys.modules.get(parent), name):
            delattr(sys.modules[parent], name)


def report_exit(connection: socket.socket, pid: int) -> None:
    """Sends the exit status of child `pid` once it ends (negative: the signal that ended it)."""
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    try:
        connection.sendall(f"{code}\n".encode())
    finally:
        connection.close()


class Server:
    """A running `serve` process for this test session; `run` runs a command in a child of it."""

    def __init__(self, env: dict):
        self.env, self.directory = env, tempfile.mkdtemp(prefix="maze_jax_tests_")
        self.path = os.path.join(self.directory, "preloaded.sock")
        self.process = subprocess.Popen([sys.executable, __file__, self.path], env=env, stdout=subprocess.PIPE,
                                        text=True)
        ready = self.process.stdout.readline()
        if ready.strip() != "ready":
            raise RuntimeError(f"the preloaded process did not start (it said {ready!r})")

    def popen(self, module: str, argv: list[str], cwd) -> Child:
        """Like `subprocess.Popen([python, -m, module, *argv], stdout=PIPE, stderr=PIPE, text=True)`."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.connect(self.path)
        request = {"module": module, "argv": [str(a) for a in argv], "cwd": os.fspath(cwd)}
        socket.send_fds(connection, [json.dumps(request).encode()], [out_w, err_w])
        os.close(out_w)
        os.close(err_w)
        return Child([sys.executable, "-m", module, *request["argv"]], connection, out_r, err_r)

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class Child:
    """A command running in a child of the preloaded process, with the `subprocess.Popen` methods the tests use:
    `pid`, `stdout` and `stderr` (text), `poll`, `wait`, `communicate`, `send_signal`, `terminate`, `kill`."""

    def __init__(self, args: list[str], connection: socket.socket, stdout_fd: int, stderr_fd: int):
        self.args, self.returncode, self.connection = args, None, connection
        self.stdout = os.fdopen(stdout_fd, "r", errors="replace")
        self.stderr = os.fdopen(stderr_fd, "r", errors="replace")
        self.pid = int(self.reply())

    def reply(self) -> str:
        """The server's next line, read unbuffered so that `select` sees whether another one waits."""
        line = b""
        while not line.endswith(b"\n"):
            byte = self.connection.recv(1)
            if not byte:
                raise RuntimeError("the preloaded process closed the connection")
            line += byte
        return line.decode()

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            if not select.select([self.connection], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(self.args, timeout)
            self.returncode = int(self.reply())
            self.connection.close()
        return self.returncode

    def poll(self) -> int | None:
        try:
            return self.wait(0)
        except subprocess.TimeoutExpired:
            return None

    def communicate(self, timeout: float | None = None) -> tuple[str, str]:
        """Both pipes read to their end, then the exit status; TimeoutExpired past `timeout` seconds."""
        read = {}
        threads = [threading.Thread(target=lambda f=f: read.__setitem__(f, f.read()), daemon=True)
                   for f in (self.stdout, self.stderr)]
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(None if deadline is None else max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                raise subprocess.TimeoutExpired(self.args, timeout)
        self.wait(None if deadline is None else max(deadline - time.monotonic(), 0))
        return read[self.stdout], read[self.stderr]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


if __name__ == "__main__":
    serve(sys.argv[1])
