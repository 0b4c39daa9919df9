"""XLA flags set before JAX starts: RL networks are tiny, so Eigen's thread pool costs more than it saves.

Measured on a 2-core CPU, ES on CartPole (population 128, 32x32): 2.2 M env steps/s with the multi-threaded
Eigen default, 2.7 M without. A flag the user already set in XLA_FLAGS is left as it is. The flags tune the CPU
backend only, so they are left out where JAX will run on a GPU or TPU: `JAX_PLATFORMS` names another platform
first, or (without it) a GPU or TPU plugin is installed.
"""

import importlib.util
import os

DEFAULTS = ("--xla_cpu_multi_thread_eigen=false",)
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
    for flag in DEFAULTS:
        if flag.split("=")[0] not in flags:
            flags = f"{flags} {flag}".strip()
    os.environ["XLA_FLAGS"] = flags
