"""Fixtures shared by the end-to-end tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module")
def dead_port() -> Iterator[int]:
    """A loopback port that is bound (so nobody else takes it) but not listening: a connection is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
