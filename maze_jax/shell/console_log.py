"""The console output of a run, also in its run directory's `train.log`: config, tables and messages, as printed."""

from __future__ import annotations

import contextlib
import sys
from typing import IO, Iterator

from maze_jax.shell.files import open_for_writing


class Tee:
    """A text stream that writes to the console stream and to a log file."""

    def __init__(self, console: IO, log: IO):
        self.console, self.log = console, log

    def write(self, text: str) -> int:
        self.log.write(text)
        return self.console.write(text)

    def flush(self) -> None:
        self.log.flush()
        self.console.flush()

    def __getattr__(self, name):  # isatty, encoding, fileno, ...: the console's
        return getattr(self.console, name)


@contextlib.contextmanager
def console_to(path: str) -> Iterator[None]:
    """Within the block, stdout and stderr also go to `path` (appended, line by line)."""
    with open_for_writing(path, "a", buffering=1, encoding="utf-8") as log:
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = Tee(out, log), Tee(err, log)
        try:
            yield
        finally:
            sys.stdout, sys.stderr = out, err
