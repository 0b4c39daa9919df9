"""Orbax checkpoints of the whole training state plus JSON metadata, in `<run>/checkpoints` and `<run>/best`.

Orbax writes each step to a temporary folder and renames it when complete, so a killed run never leaves
a half-written checkpoint where restore would find it.
"""

from __future__ import annotations

import errno
import logging
import os
from typing import Any

import jax
import numpy as np

from maze_jax.config import ConfigError, first_line

LATEST, BEST = "checkpoints", "best"


class _NoReadOnlyNotices(logging.Filter):
    """Drops Orbax's warnings that a directory opened read-only is read-only (we ask for that on resume)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "read_only" not in record.getMessage() and "read only" not in record.getMessage()


logging.getLogger("absl").addFilter(_NoReadOnlyNotices())


def _quiet_callbacks_on_closed_loops() -> None:
    """When Orbax fails to read a corrupt checkpoint, its event loop closes while TensorStore's other reads are
    still in flight; their completions then call `call_soon_threadsafe` on the closed loop from TensorStore's
    threads, and each prints an 'Event loop is closed' traceback after our one-line error. Nothing can run on a
    closed loop either way, so such a call is dropped silently."""
    import asyncio

    original = asyncio.BaseEventLoop.call_soon_threadsafe
    if getattr(original, "quiet_when_closed", False):
        return

    def call_soon_threadsafe(self, callback, *args, **kwargs):
        if self.is_closed():
            return None
        return original(self, callback, *args, **kwargs)

    call_soon_threadsafe.quiet_when_closed = True
    asyncio.BaseEventLoop.call_soon_threadsafe = call_soon_threadsafe


_quiet_callbacks_on_closed_loops()


def _is_key(x) -> bool:
    return hasattr(x, "dtype") and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key)


def to_savable(state):
    """Typed PRNG keys as their raw uint32 data (what Orbax stores)."""
    return jax.tree.map(lambda x: jax.random.key_data(x) if _is_key(x) else x, state)


def from_savable(template, saved):
    """Inverse of `to_savable`, using the template's key implementation (the default one for abstract templates)."""
    impl = lambda t: None if isinstance(t, jax.ShapeDtypeStruct) else jax.random.key_impl(t)
    return jax.tree.map(lambda t, s: jax.random.wrap_key_data(s, impl=impl(t)) if _is_key(t) else s, template, saved)


def place_like(state, template):
    """`state` (restored or host arrays) placed as `template`'s arrays are: same devices and sharding, across
    processes too (each process supplies its part from its own copy)."""
    def put(x, t):
        x = np.asarray(x)
        return jax.make_array_from_callback(t.shape, t.sharding, lambda index: x[index])

    return from_savable(template, jax.tree.map(put, to_savable(state), to_savable(template)))


def to_host(state):
    """Numpy copies of a replicated state's arrays (this process's copy: works across processes too)."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)) if isinstance(x, jax.Array) else x, state)


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, folder unwritable): the path and the OS's reason."""


def os_reason(error: BaseException) -> str:
    """The OS error behind an exception (Orbax and TensorStore wrap it; TensorStore's full disk reads
    'RESOURCE_EXHAUSTED: Error writing ...'), else its first line."""
    seen = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.strerror:
            return f"[Errno {seen.errno}] {seen.strerror}"
        if "No space left on device" in str(seen) or str(seen).startswith("RESOURCE_EXHAUSTED: Error writing"):
            return f"[Errno {errno.ENOSPC}] {os.strerror(errno.ENOSPC)}"
        seen = seen.__cause__ or seen.__context__
    return f"{type(error).__name__}: {first_line(error)}"


class NoCheckpoints:
    """Stands in for a CheckpointDir in processes other than 0 of a multi-process run: saves nothing."""

    def __init__(self, path: str):
        self.path, self._step = os.path.abspath(path), None

    def save(self, step: int, state, meta: dict) -> None:
        self._step = step

    def latest_step(self) -> int | None:
        return self._step

    def close(self) -> None:
        pass


class CheckpointDir:
    """One Orbax CheckpointManager: `save(step, state, meta)` and `restore(template) -> (state, meta)`."""

    def __init__(self, path: str, max_to_keep: int = 1, keep_period: int | None = None, read_only: bool = False):
        import orbax.checkpoint as ocp

        self._ocp = ocp
        self.path = os.path.abspath(path)
        # With several processes (jax.distributed), a process reads or writes alone: the state is replicated,
        # every process restores it whole, and only process 0 saves it.
        me, several = jax.process_index(), jax.process_count() > 1
        if several and not read_only:
            os.makedirs(self.path, exist_ok=True)  # Orbax will not create it for a subset of processes
        processes = ocp.options.MultiprocessingOptions(**({"primary_host": me, "active_processes": {me}}
                                                            if several else {}))
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, keep_period=keep_period or None,
                                               create=not read_only and not several, read_only=read_only,
                                               enable_async_checkpointing=False, multiprocessing_options=processes)
        self._manager = ocp.CheckpointManager(self.path, options=options)

    def save(self, step: int, state, meta: dict) -> None:
        """Saves `state` and `meta` as `step`, replacing a checkpoint of that step (a seed's new best model)."""
        ocp = self._ocp
        try:
            if step in self._manager.all_steps():
                self._manager.delete(step)
            state = to_host(to_savable(state))
            args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
            self._manager.save(step, args=args, force=True)
            self._manager.wait_until_finished()
        except Exception as error:  # Orbax wraps the OS's reason (no space left, permission denied) many ways
            raise CheckpointWriteError(f"could not write the checkpoint of epoch {step} to {self.path}: "
                                       f"{os_reason(error)}") from None

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def restore_meta(self, step: int | None = None) -> dict:
        ocp = self._ocp
        step = self.latest_step() if step is None else step
        return self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta

    def restore(self, template, step: int | None = None) -> tuple[Any, dict]:
        """The state (shaped like `template`, arrays or `jax.eval_shape` structs) and metadata of `step`
        (default: latest)."""
        ocp = self._ocp
        step = self.latest_step() if step is None else step
        # restored as numpy (the caller places the arrays): works alike for one device, a mesh and many processes
        abstract = jax.tree.map(lambda x: np.zeros(x.shape, x.dtype), jax.eval_shape(to_savable, template))
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore())
        try:
            restored = self._manager.restore(step, args=args)
        except Exception:  # Orbax's words for a tree of other names are an error in formatting its own message
            raise_unfit(abstract, self.restore_raw(step))
            raise
        raise_unfit(abstract, restored.state)  # Orbax restores the saved shapes, whatever the template's
        return from_savable(template, restored.state), restored.meta

    def restore_raw(self, step: int | None = None) -> dict:
        """The saved state as nested dicts of numpy arrays, without a template (for another algorithm's run)."""
        step = self.latest_step() if step is None else step
        args = self._ocp.args.Composite(state=self._ocp.args.StandardRestore())
        return self._manager.restore(step, args=args)["state"]

    def close(self) -> None:
        self._manager.close()


def tree_difference(template, saved, shown: int = 1) -> str:
    """What tells the leaves of `saved` (nested dicts) from those of `template` (any pytree), by path
    (`learner/params/...`, the shallowest first): leaves only one of them has, then shapes that differ, at most
    `shown` of each; '' when they fit."""
    def leaves(tree):
        name = lambda key: str(getattr(key, "name", getattr(key, "key", getattr(key, "idx", key))))  # noqa: E731
        return {"/".join(map(name, path)): np.shape(x) for path, x in jax.tree_util.tree_flatten_with_path(tree)[0]}

    want, got = leaves(template), leaves(saved)
    listed = lambda paths: ", ".join(paths[:shown]) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")  # noqa
    order = lambda paths: sorted(paths, key=lambda path: (path.count("/"), path))  # noqa: E731
    parts = [f"{what} {listed(paths)}" for what, paths in (
        ("this model has", order(want.keys() - got.keys())), ("the checkpoint has", order(got.keys() - want.keys())))
        if paths]
    parts += [f"{path} is {got[path]} in the checkpoint, {want[path]} in this model"
              for path in order(want.keys() & got.keys()) if want[path] != got[path]][:shown]
    return "; ".join(parts)


def raise_unfit(template, saved, what: str = "not this model's state") -> None:
    """A ConfigError `what: <the difference>` when `saved` does not fit `template` (`tree_difference`)."""
    difference = tree_difference(template, saved)
    if difference:
        raise ConfigError(f"{what}: {difference}")


def fit_arrays(template, saved, what: str = "the saved networks"):
    """`saved` (nested dicts of host arrays, as `restore_raw` gives them) in the structure and dtypes of
    `template` (arrays or shape structs); a ConfigError naming what differs when leaves or shapes differ."""
    raise_unfit(template, saved, f"{what} do not fit this model")
    try:
        return jax.tree.map(lambda t, s: np.asarray(s, t.dtype), template, saved)
    except ValueError as error:  # same leaves, other containers (a tuple saved as a list, say)
        raise ConfigError(f"{what} do not fit this model: {first_line(error)}") from None
