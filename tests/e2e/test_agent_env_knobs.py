"""The agent is the adversary: no variable in the proxy's environment weakens a check (SECURITY.md §E rule 5).

Attack: the agent starts the proxy (as ``cordon run`` would) with the former test switches set:
``CORDON_TEST_ALLOW_LOOPBACK=1`` (which let unrouted traffic reach loopback) and ``CORDON_TEST_RESOLVE``
(which overrode DNS), aiming at a loopback service that records what it receives. Nothing may reach it.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from cordon_testing.proxy import (
    ProxyProcess,
    RecordingUpstream,
    RouteSpec,
    free_port,
    read_head,
    write_config,
)

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def _connect(port: int, target: str) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        return read_head(sock)


def test_former_test_switches_in_the_proxys_environment_change_nothing(tmp_path: Path) -> None:
    with RecordingUpstream(tls=False) as local_service:
        port = free_port()
        config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
        env = dict(os.environ, CORDON_TEST_SECRET="x", CORDON_TEST_ALLOW_LOOPBACK="1",
                   CORDON_TEST_RESOLVE="evil.example=127.0.0.1,api.test=127.0.0.1")
        with ProxyProcess(config, port, env=env, resolve={"api.test": "127.0.0.1"}):
            loopback = _connect(port, f"127.0.0.1:{local_service.port}")
            renamed = _connect(port, f"evil.example:{local_service.port}")
        assert local_service.requests == [] and local_service.connections == 0
    assert loopback.startswith(b"HTTP/1.1 403 ") and b"X-Cordon-Error: blocked" in loopback
    assert b"(loopback address)" in loopback
    # evil.example is resolved by the real resolver (here: the proxy's hosts file, which does not name it)
    assert renamed.startswith(b"HTTP/1.1 502 ") and b"name did not resolve" in renamed


def test_no_product_module_reads_a_test_switch() -> None:
    for source in (ROOT / "packages").glob("*/src/**/*.py"):
        if "cordon_testing" in source.parts:
            continue
        text = source.read_text(encoding="utf-8")
        for knob in ("CORDON_TEST_ALLOW_LOOPBACK", "CORDON_TEST_RESOLVE", "allow_loopback"):
            assert knob not in text, f"{source} mentions {knob}"
