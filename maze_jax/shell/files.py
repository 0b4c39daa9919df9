"""Files a run writes into its run directory, never through a symbolic link planted there.

A run directory may come from anyone (see `shell.trust`): a link named `train.log` or `.lock` that points to a
user's file would have the run append to, truncate or overwrite it. Every file the run opens for writing is opened
with O_NOFOLLOW, and a link in its place is refused in one line.
"""

from __future__ import annotations

import errno
import os
from typing import IO

from maze_jax.config import ConfigError

RUN_FILES = (".lock", "train.log", "hydra_config.yaml", "model_summary.txt", "learning_curve.png", "networks.png",
             "checkpoints", "best", ".hydra")
"""What a training run creates in its run directory (TensorBoard's event files have fresh names of their own)."""


def open_for_writing(path: str, mode: str = "w", **kwargs) -> IO:
    """`open(path, mode)` for writing (modes w, a, a+, wb), refusing with a ConfigError to follow a symbolic link at
    `path`."""
    flags = os.O_CREAT | os.O_NOFOLLOW | (os.O_APPEND if "a" in mode else os.O_TRUNC)
    flags |= os.O_RDWR if "+" in mode else os.O_WRONLY
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link: a run writes its own files only, never through a link "
                              "(remove it, or choose another run directory)") from None
        raise
    return os.fdopen(fd, mode, **kwargs)


def refuse_links(run_dir: str) -> None:
    """A ConfigError when one of the names a run writes (`RUN_FILES`) is a symbolic link in `run_dir`."""
    for name in RUN_FILES:
        if os.path.islink(os.path.join(run_dir, name)):
            raise ConfigError(f"{os.path.join(run_dir, name)} is a symbolic link: a run writes its own files only, "
                              "never through a link (remove it, or choose another run directory)")
