"""Memory that a run's programs need against what the machine has, and out-of-memory errors as one line.

XLA says how much memory a compiled program allocates when it runs (`Compiled.memory_analysis()`: its outputs and
temporaries, beyond the arguments the caller already holds). A program that needs more than is free (the CPU's
`MemAvailable`, a GPU's free memory) is refused before it runs, instead of failing minutes later or being killed by
the operating system. ES with a population of 4096 on networks of 1M parameters, say, needs 64 GiB in its epoch. An
allocation that still fails while a program runs (XLA's RESOURCE_EXHAUSTED) is reported the same way.
"""

from __future__ import annotations

import os

import jax

from maze_jax.config import first_line

GiB = 2**30
ADVICE = ("a smaller population (algorithm.n_rollouts_per_update), fewer envs (runner.concurrency), fewer seeds, "
          "smaller batches or smaller networks (model.hidden_units; for images, larger model.strides) need less")


class OutOfMemory(Exception):
    """A program needs more memory than the machine has; the message is one line."""


def free_bytes(device) -> int | None:
    """Memory free for new arrays on `device`: the host's available memory for a CPU, the free part of a GPU's or
    TPU's own; None where the platform does not say."""
    if device.platform == "cpu":
        try:
            with open("/proc/meminfo") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    try:
        stats = device.memory_stats() or {}
    except Exception:  # a platform without memory statistics
        return None
    return stats["bytes_limit"] - stats.get("bytes_in_use", 0) if "bytes_limit" in stats else None


def needed_bytes(compiled, devices: list) -> int | None:
    """What a compiled program allocates when it runs on `devices` (`program_devices`), in one memory (every CPU
    device of a process shares the host's): outputs and temporaries, less the outputs that reuse donated arguments."""
    try:
        stats = compiled.memory_analysis()
    except Exception:  # a backend without the analysis
        return None
    if stats is None:
        return None
    per_device = stats.output_size_in_bytes + stats.temp_size_in_bytes - stats.alias_size_in_bytes
    return per_device * (len(devices) if devices[0].platform == "cpu" else 1)


def program_devices(compiled) -> list:
    """The devices of this process that a compiled program's outputs live on (at least one)."""
    devices = {d for sharding in jax.tree.leaves(compiled.output_shardings) for d in sharding.device_set
               if d.process_index == jax.process_index()}
    return sorted(devices, key=lambda d: d.id) or jax.local_devices()[:1]


def check_fits(compiled, what: str) -> None:
    """Raises OutOfMemory, naming the program (`what`), when it needs more memory than is free now."""
    devices = program_devices(compiled)
    need = needed_bytes(compiled, devices)
    if need is None:
        return
    device = devices[0]
    free = free_bytes(device)
    if free is not None and need > free:
        raise OutOfMemory(f"the {what} needs {need / GiB:.1f} GiB of memory and {free / GiB:.1f} GiB are free "
                          f"({device.platform}): {ADVICE}")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an error is an allocation that failed while a program ran (XLA's RESOURCE_EXHAUSTED)."""
    return isinstance(error, OutOfMemory) or (isinstance(error, jax.errors.JaxRuntimeError) and
                                              "RESOURCE_EXHAUSTED" in str(error))


def out_of_memory_line(error: BaseException) -> str:
    """The one line for an out-of-memory error (without "Error: ")."""
    if isinstance(error, OutOfMemory):
        return str(error)
    return f"out of memory ({first_line(error).removeprefix('RESOURCE_EXHAUSTED: ').rstrip('.')}): {ADVICE}"
