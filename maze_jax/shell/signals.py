"""Ctrl-C (SIGINT) and SIGTERM as requests to stop at the next safe point, for the whole of a run."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Callable


class StopSignals:
    """While active, SIGINT and SIGTERM only set `received`; the run checks it at safe points (after compiling,
    between epochs and evaluation batches) and stops cleanly, saving what it has.

    Raising from the handler instead could land inside a library holding a lock (an Orbax save, say) and lose the
    final save. So a repeated signal never interrupts either: it says what the run is doing (`busy`) and that it
    exits when that is done."""

    def __init__(self, echo: Callable = print):
        self.received, self.busy, self.echo = "", "", echo
        self._previous = {}

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.received:
            self.echo(f"{name} again: {self.busy or 'stopping at the next safe point'}; the run exits when that is "
                      "done", file=sys.stderr, flush=True)
            return
        self.received = name

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
