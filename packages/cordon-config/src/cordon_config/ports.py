"""Finding a free port on 127.0.0.1 for a new scope's proxy (a bind probe; no traffic leaves the host)."""

from __future__ import annotations

import errno
import socket


def free_port(start: int = 6790, end: int = 65535, host: str = "127.0.0.1") -> int:
    """The first port from ``start`` to ``end`` that can be bound on 127.0.0.1 right now."""
    for port in range(start, end + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(errno.EADDRINUSE, f"no free port on {host} from {start} to {end}")
