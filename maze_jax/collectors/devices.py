"""Spreading the batch (ES population, actor-critic envs) over devices with a one-axis `Mesh`.

The training state stays replicated on every device (and, with jax.distributed, in every process); inside a jitted
epoch the batch is split along its leading axis with sharding constraints, and XLA inserts the collectives
(gradients and statistics summed across devices). Without a mesh (one device) the program has no constraints at
all: it is exactly the single-device program.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from maze_jax.config import ConfigError, read

AXIS = "batch"


def make_mesh(n_devices: int | None = None) -> Mesh | None:
    """A mesh of the first `n_devices` devices (None = all, across processes), or None for a single device."""
    devices = jax.devices()
    if n_devices is not None:
        if not 1 <= n_devices <= len(devices):
            kinds = "/".join(sorted({d.platform for d in devices}))
            raise ConfigError(f"runner.n_devices={n_devices}: this process sees {len(devices)} {kinds} device"
                              f"{'s' * (len(devices) > 1)}; null uses them all (on a CPU, "
                              "XLA_FLAGS=--xla_force_host_platform_device_count=N gives N)")
        devices = devices[:n_devices]
    return Mesh(np.array(devices), (AXIS,)) if len(devices) > 1 else None


def read_n_devices(runner_cfg) -> int | None:
    """`runner.n_devices`: how many devices to use (null or absent = all)."""
    if runner_cfg.get("n_devices") is None:
        return None
    return read(runner_cfg, "n_devices", int, "runner", low=1)


def check_divisible(size: int, mesh: Mesh | None, what: str) -> None:
    """The batch must split evenly: a ConfigError naming the setting otherwise."""
    if mesh is not None and size % mesh.size:
        raise ConfigError(f"{what}={size} does not split over {mesh.size} devices: use a multiple of {mesh.size} "
                          f"or set runner.n_devices")


def shard_batch(tree, mesh: Mesh | None):
    """Every leaf split along its leading (batch) axis across the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec(AXIS)))


def replicate(tree, mesh: Mesh | None):
    """Every leaf whole on every device of the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, NamedSharding(mesh, PartitionSpec()))
