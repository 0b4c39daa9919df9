"""Shared test helpers: the suite's tiers, a tiny deterministic environment and a runner for the real CLI in a
subprocess.

Tiers: `python -m pytest tests` runs the fast tier, every test without a full-tier marker (`FULL_TIER`, registered
in pyproject.toml). `--all` runs every test; `-m EXPR` runs what the marker expression selects, e.g.
`-m "cli or learning"`. The tests run in a pytest-xdist worker process per core, up to 4 (pyproject.toml's
addopts); `-n 0` runs them in pytest's own process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# The suite compiles as the product compiles its run-once init program (`shell.programs.RUNS_ONCE`): LLVM's
# optimisation level 0 instead of XLA's default 3, and XLA's older elemental emitters instead of its fusion
# emitters. Its programs are small and run briefly, so compiling is most of its time: the fast tier took 8 min 41 s
# at level 1 on a 2-core CPU and 5 min 4 s with these flags. No fast math either way, but level 0 forms no fused
# multiply-adds, so its floats differ from levels 1-3: programs whose results a test compares must compile with the
# same options (a rollout against the final evaluation, Ray workers against the local collector). Set before JAX
# starts; the suite's commands inherit them. A flag the developer puts in XLA_FLAGS stays
# (`XLA_FLAGS="--xla_backend_optimization_level=3 --xla_cpu_use_fusion_emitters=true"` tests as users run).
from maze_jax.xla_flags import with_defaults  # noqa: E402  (imports no JAX)

os.environ["XLA_FLAGS"] = with_defaults(os.environ.get("XLA_FLAGS", ""), (
    "--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false"))

import jax  # noqa: E402
import jax.numpy as jnp
import pytest
from flax import struct
from gymnax.environments import environment, spaces

REPO = Path(__file__).resolve().parents[1]

# Markers of the tests that the README's command leaves to the full run (`--all`, and .ci/run after the fast tier).
FULL_TIER = ("cli", "learning", "fuzz", "signals", "extra", "slow")


def pytest_addoption(parser):
    parser.addoption("--all", action="store_true",
                     help=f"run every tier: also the tests marked {', '.join(FULL_TIER)} (the fast tier alone "
                          f"without it)")


def pytest_collection_modifyitems(config, items):
    """The fast tier by default: deselects the full tier's tests unless `--all` or a marker expression (`-m`)."""
    if config.getoption("--all") or config.getoption("markexpr"):
        return
    full = [item for item in items if any(item.get_closest_marker(name) for name in FULL_TIER)]
    if full:
        config.hook.pytest_deselected(items=full)
        items[:] = [item for item in items if not any(item.get_closest_marker(name) for name in FULL_TIER)]


@struct.dataclass
class CountdownState(environment.EnvState):
    left: jax.Array


@struct.dataclass
class CountdownParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class Countdown(environment.Environment):
    """Every episode lasts `length` steps; each step pays 1 + action."""

    def __init__(self, length: int = 3):
        super().__init__()
        self.length = length

    @property
    def default_params(self):
        return CountdownParams()

    def step_env(self, key, state, action, params):
        left = state.left - 1
        state = CountdownState(time=state.time + 1, left=left)
        return self.get_obs(state), state, jnp.float32(1.0) + action, left <= 0, {}

    def reset_env(self, key, params):
        state = CountdownState(time=0, left=jnp.int32(self.length))
        return self.get_obs(state), state

    def get_obs(self, state, params=None, key=None):
        return jnp.array([state.left], jnp.float32)

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def observation_space(self, params):
        return spaces.Box(0, self.length, (1,))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> str:
    """One compilation cache for every CLI run of the session, so repeated programs compile once."""
    return str(tmp_path_factory.mktemp("jax_cache"))


def command_env() -> dict:
    """The environment of the suite's commands: this one, with the checkout first on the path."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return env


PRELOADED: list = []  # the session's preloaded process (tests/preloaded.py), started by the first command


@pytest.fixture(scope="session", autouse=True)
def close_preloaded():
    yield
    for server in PRELOADED:
        server.close()


def start_cli(argv: list[str], cwd, module: str = "maze_jax.train", env: dict | None = None):
    """Starts `python -m MODULE ARGV` (default environment: `command_env()`); returns its Popen, whose stdout and
    stderr are text pipes.

    In the default environment the command runs in a child forked from a process that has imported the libraries
    already (tests/preloaded.py): the same command in a process of its own, 2 to 3 s sooner.
    `MAZE_JAX_TESTS_FRESH_PROCESSES=1` starts a new `python -m` process for every command instead."""
    env = command_env() if env is None else env
    if os.environ.get("MAZE_JAX_TESTS_FRESH_PROCESSES") != "1" and env == command_env():
        from preloaded import Server

        if not PRELOADED:
            PRELOADED.append(Server(env))
        return PRELOADED[0].popen(module, argv, cwd)
    return subprocess.Popen([sys.executable, "-m", module, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def run_cli(args: list[str], cwd, cache_dir: str, module: str = "maze_jax.train", timeout: float = 300):
    """Runs `python -m maze_jax.train ARGS` like a user would (see `start_cli`); returns the CompletedProcess (text
    output)."""
    return finish(start_cli([*args, f"compilation_cache_dir={cache_dir}"], cwd, module), timeout)


def finish(proc, timeout: float) -> subprocess.CompletedProcess:
    """The outputs and exit status of a started command once it ends; killed past `timeout` seconds."""
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def make_trainer(overrides: list[str], env=None):
    """(env_spec, trainer) of a composed training config, built as a run builds them (env: replaces the config's)."""
    from maze_jax.shell.session import build
    from maze_jax.shell.settings import compose_config, read_settings

    cfg, _ = compose_config(overrides)
    return build(read_settings(cfg), env=env, echo=lambda *a, **k: None)


def init_state(trainer, seed: int = 0):
    """A fresh training state of `trainer` from one seed (agent and env keys drawn from it)."""
    key = jax.random.key(seed)
    return trainer.init(key, jax.random.fold_in(key, 1))


def mounted_tmpfs(path, read_only: bool = False):
    """A 3 MB tmpfs at `path` (created), read-only if asked, unmounted when the generator closes; the test is
    skipped where mounting needs rights it lacks (it needs root)."""
    path.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(path)], capture_output=True).returncode:
        pytest.skip("a disk of its own needs mount (root)")
    (path / "existing").mkdir()
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True, capture_output=True)
    yield path
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB disk, which a test fills to leave what it wants free."""
    yield from mounted_tmpfs(tmp_path / "disk")


@pytest.fixture
def read_only_disk(tmp_path):
    """A read-only disk holding one folder, `existing` (root cannot write it either)."""
    yield from mounted_tmpfs(tmp_path / "ro", read_only=True)
