"""Ends the processes a run started when the run itself is killed (`kill -9`, the OOM killer), where no code of the
run can clean up: run as a script (`python reaper.py <run pid>`, stdlib only) in a session of its own.

It notes every process below the run's (by /proc, twice a second, with its start time so that a reused pid is
never hit) and, once its standard input closes (the run ended, however), kills those still alive and exits.
`runner=ray` starts one next to a local Ray, whose dashboard and runtime-env agents otherwise outlive a killed run.
"""

from __future__ import annotations

import os
import select
import signal
import sys


def start_time(pid: int) -> str | None:
    """The start time of `pid` (clock ticks since boot), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def descendants(root: int) -> dict[int, str]:
    """{pid: start time} of every live process below `root`."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    found, todo = {}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and (started := start_time(child)) is not None:
                found[child] = started
                todo.append(child)
    return found


def watch(root: int, ignore: set[int]) -> None:
    """Notes `root`'s descendants (but those in `ignore`) until standard input closes; then kills them."""
    seen: dict[int, str] = {}
    while True:
        seen.update({pid: t for pid, t in descendants(root).items() if pid not in ignore})
        ready, _, _ = select.select([sys.stdin], [], [], 0.5)
        if ready and not os.read(sys.stdin.fileno(), 1024):
            break
    for pid, started in seen.items():
        if start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


if __name__ == "__main__":
    watch(int(sys.argv[1]), {os.getpid(), *(int(p) for p in sys.argv[2:])})
