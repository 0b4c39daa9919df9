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
from maze_jax.shell.settings import CONFIG_FILE


def parent_runs(input_dir: str) -> list[str]:
    """The runs `input_dir` was resumed from, nearest first: each run's saved `input_dir` (its config's), as far back
    as they exist (a loop or an unreadable config ends the chain)."""
    import yaml

    chain, run = [], input_dir
    while True:
        try:
            with open(os.path.join(run, CONFIG_FILE)) as f:
                parent = (yaml.safe_load(f) or {}).get("input_dir")
        except (OSError, yaml.YAMLError, AttributeError):
            return chain
        if not isinstance(parent, str) or not parent or not os.path.isdir(parent) or \
                os.path.realpath(parent) in {os.path.realpath(r) for r in [input_dir, *chain]}:
            return chain
        chain.append(parent)
        run = parent


def _steps(path: str) -> list[int]:
    """The complete checkpoints of the Orbax folder `path`, newest first (an OSError-like error if unlistable)."""
    store = CheckpointDir(path, read_only=True)
    try:
        return sorted(store._manager.all_steps(), reverse=True)
    finally:
        store.close()


def candidates(input_dir: str, folders: tuple = (LATEST, BEST)) -> tuple[list[tuple[str, str, int]], list[str]]:
    """(label, folder path, step) of every checkpoint `read_first_usable` may read, in the order it tries them; and
    the folders that could not be listed, as 'label (reason)'.

    With the latest checkpoints first (a resume): the run's `checkpoints/`, newest first, then those of the runs it
    resumed from (a resumed run killed in its first save has none of its own, and its parent's latest is newer than
    the best model it copied), and its `best/` last (a best model of several seeds mixes epochs: a consistent state
    is a latest checkpoint). With the best model first (a policy to roll out), folder by folder."""
    found, unreadable = [], []
    places = [(which, os.path.join(input_dir, which), which + "/") for which in folders]
    if folders[0] == LATEST:
        places[1:1] = [(LATEST, os.path.join(parent, LATEST), os.path.join(parent, LATEST) + "/")
                       for parent in parent_runs(input_dir)]
    for which, path, label in places:
        if not os.path.isdir(path):
            continue
        try:
            steps = _steps(path)
        except Exception as error:  # a folder Orbax cannot even list
            unreadable.append(f"{label} ({os_reason(error)})")
            continue
        found += [(label + str(step), path, step) for step in steps]
    return found, unreadable


def read_first_usable(input_dir: str, read: Callable[[CheckpointDir, int], Any], echo: Callable = print,
                      folders: tuple = (LATEST, BEST)) -> tuple[Any, Progress, str]:
    """`read(store, step)` of the first candidate (`candidates`) whose metadata and contents are sound: (what it
    read, the checkpoint's Progress, its label: 'folder/step', or a parent run's path for its checkpoints). Each
    candidate skipped is named in one line, and so is a run whose own latest checkpoints are missing (deleted, or a
    save cut short); when none is usable, a ConfigError lists them all."""
    if not os.path.isdir(input_dir):
        raise ConfigError(f"input_dir={input_dir!r} does not exist")
    found, skipped = candidates(input_dir, folders)
    own_latest = folders[0] == LATEST and not any(label.startswith(LATEST + "/") for label, _, _ in found)
    for label, path, step in found:
        store = CheckpointDir(path, read_only=True)
        try:
            progress = Progress.from_meta(store.restore_meta(step))
            result = read(store, step)
        except Exception as error:  # Orbax, TensorStore and our own checks: all mean "cannot use this one"
            reason = str(error) if isinstance(error, (ConfigError, ValueError)) else os_reason(error)
            skipped.append(f"{label} ({first_line(reason, 160)})")
            continue
        finally:
            store.close()
        if own_latest:
            skipped.insert(0, f"{LATEST}/ (no complete checkpoint: deleted, or its save was cut short)")
        if skipped:
            echo(f"Skipped {'; '.join(skipped)}: using {label} (epoch {progress.epoch})", flush=True)
        return result, progress, label
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
