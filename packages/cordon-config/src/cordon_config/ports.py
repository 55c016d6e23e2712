"""Finding a free port on 127.0.0.1 (a bind probe; no traffic leaves the host): the one ``free_port`` of setup,
the demo, the test harness and the benchmark."""

from __future__ import annotations

import errno
import socket


def free_port(start: int | None = None, end: int = 65535, host: str = "127.0.0.1") -> int:
    """A port on ``host`` that could be bound a moment ago: the first from ``start`` to ``end`` (a new scope's
    proxy port, near the default), or with no ``start`` one the OS picks (a throwaway server)."""
    if start is None:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    for port in range(start, end + 1):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise OSError(errno.EADDRINUSE, f"no free port on {host} from {start} to {end}")
