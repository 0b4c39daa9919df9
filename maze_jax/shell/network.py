"""Whether a cluster's address answers, asked before a library that would wait on it for minutes (Ray) or abort
the process (jax.distributed) is given it."""

from __future__ import annotations

import socket
import time


def unreachable(address: str, timeout_s: float) -> str:
    """'' once `address` ('host:port', optionally 'scheme://host:port') accepts a TCP connection, polled until
    `timeout_s` (a cluster may still be starting); else why not, in a few words. A host name that does not resolve
    fails at once."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    try:
        port_number = int(port)
    except ValueError:
        return f"{address!r} is not host:port"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.create_connection((host or "localhost", port_number), timeout=1.0).close()
            return ""
        except socket.gaierror:
            return f"the host {host!r} is unknown"
        except OSError as error:
            if time.monotonic() >= deadline:
                return f"nothing answered there within {timeout_s:g} s ({error.strerror or type(error).__name__})"
            time.sleep(0.2)
