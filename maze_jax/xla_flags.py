"""XLA flags set before JAX starts (`import maze_jax` sets them, as do the commands), for the CPU backend:
- `--xla_cpu_multi_thread_eigen=false`: RL networks are tiny, so Eigen's thread pool costs more than it saves.
  Measured on a 2-core CPU, ES on CartPole (population 128, 32x32): 2.2 M env steps/s with the multi-threaded
  Eigen default, 2.7 M without.
- `--xla_cpu_enable_concurrency_optimized_scheduler=false`: jaxlib's batched LAPACK kernels (QR, ... under `vmap`)
  split their batch over XLA's intra-op thread pool and block a pool thread while they wait. With the
  concurrency-optimised scheduler, XLA runs several of them at once; on a 2-core CPU they hold every pool thread and
  the program never returns (`jax.jit(jax.vmap(f))` of 32 QRs of 64x64 matrices hangs 3 times in 3 without the flag,
  finishes with it). maze_jax's own networks draw their orthogonal weights unbatched (`models/init.py`), so its
  trainers are safe without the flag; the flag covers batched linear algebra in one's own env or loss. ES and PPO
  throughput measured the same with and without it (`scripts/bench.py --quick --only es ppo`, by turns).
A flag the user already set in XLA_FLAGS is left as it is. The flags tune the CPU backend only, so they are left
out where JAX will run on a GPU or TPU: `JAX_PLATFORMS` names another platform first, or (without it) a GPU or TPU
plugin is installed. XLA reads them once, when JAX's backend starts: `came_too_late()` says when that happened
before they were set (an import that made a JAX array before `import maze_jax`).

The commands and `RunContext` also run each CPU program in the thread that calls it (`run_programs_inline`, JAX's
`jax_cpu_enable_async_dispatch=False`). JAX's default hands every program with a matrix product to a pool thread,
and waking that thread costs more than a small network's forward pass: on a 2-core CPU a 16x64x64 matmul took 31 us
a call against 8 inline, and a host actor's policy call for 16 LunarLander envs 63 us against 29. Python envs train
faster for it (`scripts/bench.py --only python`); compiled epochs of JAX envs run as fast either way (the shell
waits for them on a thread of its own: `shell.loop.wait_until_ready`). It is left out on accelerators, and where
JAX's backend started before (one's own JAX code first, then `RunContext`): the runs are the same, only slower.
"""

import importlib.util
import os
import sys

DEFAULTS = ("--xla_cpu_multi_thread_eigen=false", "--xla_cpu_enable_concurrency_optimized_scheduler=false")
_late: list[str] = []  # default flags that were set after the backend had started
ACCELERATOR_PLUGINS = ("jax_cuda12_plugin", "jax_cuda13_plugin", "jax_rocm60_plugin", "jax_rocm7_plugin", "libtpu")


def runs_on_cpu() -> bool:
    """Whether JAX will compute on the CPU, judged without importing it (importing would fix the flags)."""
    platforms = os.environ.get("JAX_PLATFORMS", "").strip()
    if platforms:
        return platforms.split(",")[0].strip().lower() == "cpu"
    return not any(importlib.util.find_spec(plugin) for plugin in ACCELERATOR_PLUGINS)


def apply_defaults() -> None:
    """Adds each default flag to XLA_FLAGS unless the user set that flag or JAX runs on an accelerator; call
    before importing jax."""
    if not runs_on_cpu():
        return
    flags = os.environ.get("XLA_FLAGS", "")
    if backend_started():
        _late.extend(flag for flag in unset(flags, DEFAULTS) if flag not in _late)
    os.environ["XLA_FLAGS"] = with_defaults(flags, DEFAULTS)


def unset(flags: str, defaults) -> list[str]:
    """Those of `defaults` ("--name=value") whose name XLA_FLAGS `flags` does not set."""
    return [flag for flag in defaults if flag.split("=")[0] not in flags]


def with_defaults(flags: str, defaults) -> str:
    """XLA_FLAGS `flags` with each of `defaults` added whose name it does not set."""
    return " ".join([flags, *unset(flags, defaults)]).strip()


def run_programs_inline() -> bool:
    """Makes JAX run each CPU program in the calling thread (see above); returns whether it did: not where JAX
    runs on an accelerator, nor once JAX's backend has started (the setting is read when it starts)."""
    if not runs_on_cpu() or backend_started():
        return False
    import jax

    jax.config.update("jax_cpu_enable_async_dispatch", False)
    return True


def backend_started() -> bool:
    """Whether JAX's backend already runs in this process (checked without importing JAX)."""
    bridge = sys.modules.get("jax._src.xla_bridge")
    return bool(bridge is not None and getattr(bridge, "backends_are_initialized", lambda: False)())


def came_too_late() -> tuple[str, ...]:
    """The default flags that were set only after JAX's backend had started, so XLA never read them."""
    return tuple(_late)
