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
        self._to_log("write", text)
        return self.console.write(text)

    def flush(self) -> None:
        self._to_log("flush")
        self.console.flush()

    def _to_log(self, method: str, *args) -> None:
        """The log file's `method`; once it fails (a full disk), the log stops and the console goes on (the run
        reports the disk where it matters: its checkpoints)."""
        if self.log is None:
            return
        try:
            getattr(self.log, method)(*args)
        except (OSError, ValueError):  # ValueError: closed
            self.log = None

    def __getattr__(self, name):  # isatty, encoding, fileno, ...: the console's
        return getattr(self.console, name)


@contextlib.contextmanager
def console_to(path: str) -> Iterator[None]:
    """Within the block, stdout and stderr also go to `path` (appended, line by line)."""
    log = open_for_writing(path, "a", buffering=1, encoding="utf-8")
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = Tee(out, log), Tee(err, log)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
        try:
            log.close()
        except OSError:  # its last lines could not be written (a full disk)
            pass
