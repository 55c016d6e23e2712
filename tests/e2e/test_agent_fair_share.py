"""The agent is the adversary: connections that show no token cannot lock the token holders out
(SECURITY.md §E rule 4).

Attack: with proxy tokens on, a local process opens many more connections than unauthenticated ones may hold
(``[limits] max_unauthenticated``, small here), some sending nothing and some looping ``GET /health`` on
keep-alive; a token holder then opens a new connection, CONNECTs to the routed host and sends a request. It
must be served. Unauthenticated connections have a cap and a first-head deadline of their own; a ``/health``
connection is closed after its answer. (The benchmark measures the same with 2,000 connections.)
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_config.tokens import TokenStore
from cordon_testing.proxy import TIMEOUT, Stack, read_head, read_response, running_stack, tokens_for

pytestmark = pytest.mark.e2e

SECRET = "sk-fair-share-secret-31f0"
CAP = 8
FIRST_HEAD = 1.0
FLOOD = 60


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Stack, str]]:
    path, namespace = tokens_for(tmp_path / "cordon.toml")
    token = TokenStore.open(path).ensure("holder")
    header = "Basic " + base64.b64encode(f"{namespace}:{token}".encode()).decode()
    extra = f"[limits]\nmax_unauthenticated = {CAP}\nfirst_head_timeout = {FIRST_HEAD}\nmax_connections = 64"
    with running_stack(tmp_path, secrets={"CORDON_TEST_SECRET": SECRET}, extra_config=extra) as s:
        yield s, header


def _holder_tunnel(s: Stack, header: str) -> ssl.SSLSocket:
    """A token holder's new connection, CONNECTed to the routed host and in TLS with cordon."""
    sock = socket.create_connection(("127.0.0.1", s.proxy.port), timeout=TIMEOUT)
    try:
        sock.sendall(f"CONNECT api.test:{s.upstream.port} HTTP/1.1\r\nHost: api.test\r\n"
                     f"Proxy-Authorization: {header}\r\n\r\n".encode())
        head = read_head(sock)
        assert head.startswith(b"HTTP/1.1 200 "), head
        return ssl.create_default_context(cafile=str(s.cordon_ca)).wrap_socket(sock, server_hostname="api.test")
    except BaseException:
        sock.close()
        raise


def _get(tls: ssl.SSLSocket, path: str) -> bytes:
    """GET ``path`` on the tunnel; the whole response is read, so the next one starts at its own head."""
    tls.sendall(f"GET {path} HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer dummy\r\n\r\n".encode())
    head, _ = read_response(tls)
    return head


def _is_closed(sock: socket.socket, wait: float) -> bool:
    sock.settimeout(wait)
    try:
        return sock.recv(65536) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_a_token_holder_is_served_while_unauthenticated_connections_flood(stack) -> None:
    s, header = stack
    idle = [socket.create_connection(("127.0.0.1", s.proxy.port), timeout=TIMEOUT) for _ in range(FLOOD)]
    loopers = []
    for _ in range(FLOOD // 2):
        sock = socket.create_connection(("127.0.0.1", s.proxy.port), timeout=TIMEOUT)
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{s.proxy.port}\r\n\r\n".encode())
        loopers.append(sock)
    holder: list[ssl.SSLSocket] = []
    try:
        tls = _holder_tunnel(s, header)
        holder.append(tls)
        assert _get(tls, "/served-under-flood").startswith(b"HTTP/1.1 200 ")
        assert s.upstream.requests[-1].path == "/served-under-flood"
        assert s.upstream.requests[-1].header("Authorization") == [f"Bearer {SECRET}"]
        # all but the newest CAP unauthenticated connections were closed at once to make room
        evicted = sum(_is_closed(sock, TIMEOUT) for sock in idle[: FLOOD - CAP])
        assert evicted == FLOOD - CAP
        # each /health looper got its answer and then the connection was closed (keep-alive or not)
        for sock in loopers:
            sock.settimeout(TIMEOUT)
            data = b""
            while chunk := sock.recv(65536):
                data += chunk
            assert data == b"" or data.startswith(b"HTTP/1.1 200 ")
        # the token holder's keep-alive connection outlives the unauthenticated first-head deadline
        time.sleep(FIRST_HEAD * 1.5)
        assert _get(tls, "/still-served").startswith(b"HTTP/1.1 200 ")
        # and an unauthenticated connection that sends nothing does not
        assert all(_is_closed(sock, TIMEOUT) for sock in idle[FLOOD - CAP:])
    finally:
        for sock in idle + loopers + holder:
            sock.close()


def test_a_health_connection_is_closed_after_its_answer(stack) -> None:
    s, _ = stack
    with socket.create_connection(("127.0.0.1", s.proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{s.proxy.port}\r\nConnection: keep-alive\r\n\r\n"
                     .encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200 ") and b"\r\nConnection: close\r\n" in data
    assert data.endswith(b'{"status":"ok"}')
