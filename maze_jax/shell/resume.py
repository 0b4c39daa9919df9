"""Reading a previous run's checkpoints without trusting them: every candidate (the latest checkpoints, newest first,
then the best model) is checked as it is read; a corrupt one is skipped with a line naming it and why, and only when
none is usable does the resume stop, in one line."""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from maze_jax.config import ConfigError, first_line
from maze_jax.shell.checkpoints import BEST, LATEST, CheckpointDir, os_reason
from maze_jax.shell.loop import Progress


def candidates(input_dir: str) -> tuple[list[tuple[str, int]], list[str]]:
    """(folder, step) of every checkpoint of `input_dir`, the latest checkpoints first, newest first; and the folders
    that could not be listed at all, as 'folder (reason)'."""
    found, unreadable = [], []
    for which in (LATEST, BEST):
        path = os.path.join(input_dir, which)
        if not os.path.isdir(path):
            continue
        try:
            store = CheckpointDir(path, read_only=True)
            steps = sorted(store._manager.all_steps(), reverse=True)
            store.close()
        except Exception as error:  # a folder Orbax cannot even list
            unreadable.append(f"{which}/ ({os_reason(error)})")
            continue
        found += [(which, step) for step in steps]
    return found, unreadable


def read_first_usable(input_dir: str, read: Callable[[CheckpointDir, int], Any], echo: Callable = print,
                      folders: tuple = (LATEST, BEST)) -> tuple[Any, Progress, str]:
    """`read(store, step)` of the first candidate in `folders` whose metadata and contents are sound: (what it read,
    the checkpoint's Progress, 'folder/step'). Each candidate skipped is named in one line; when none is usable,
    a ConfigError lists them all."""
    if not os.path.isdir(input_dir):
        raise ConfigError(f"input_dir={input_dir!r} does not exist")
    found, skipped = candidates(input_dir)
    for which, step in sorted((c for c in found if c[0] in folders), key=lambda c: folders.index(c[0])):
        store = CheckpointDir(os.path.join(input_dir, which), read_only=True)
        try:
            progress = Progress.from_meta(store.restore_meta(step))
            result = read(store, step)
        except Exception as error:  # Orbax, TensorStore and our own checks: all mean "cannot use this one"
            reason = str(error) if isinstance(error, (ConfigError, ValueError)) else os_reason(error)
            skipped.append(f"{which}/{step} ({first_line(reason, 160)})")
            continue
        finally:
            store.close()
        if skipped:
            echo(f"Skipped {'; '.join(skipped)}: using {which}/{step}", flush=True)
        return result, progress, f"{which}/{step}"
    listed = "; ".join(skipped) if skipped else f"no checkpoint in {' or '.join(f + '/' for f in folders)}"
    raise ConfigError(f"input_dir={input_dir!r} holds no usable checkpoint ({listed})")


def stored_statistics(run_dir: str) -> dict | None:
    """The normalisation statistics saved with a run's checkpoints (None when it has none)."""
    def statistics(store: CheckpointDir, step: int):
        saved = store.restore_meta(step).get("normalization")
        if saved is None:
            return None
        return {k: {n: np.asarray(v, np.float32) for n, v in s.items()} for k, s in saved.items()}

    return read_first_usable(run_dir, statistics, echo=lambda *a, **k: None)[0]
