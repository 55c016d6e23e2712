"""The agent is the adversary: a rotated or revoked token stops working on connections already open
(SECURITY.md §E rule 4), and a ``tokens.toml`` others can read is refused while the proxy runs.

Attack: a client opens, with token ``victim``, a MITM tunnel to the routed host, an unrouted (spliced) tunnel
and a plain-HTTP keep-alive connection, and keeps them; the user then revokes (or rotates) ``victim``. Every
one of those connections must be closed, and a request sent on the MITM tunnel right after the revocation
must not reach the upstream. A connection opened with another token keeps working. The stack lives in a
private network namespace (an unrouted upstream the SSRF policy allows).
"""

from __future__ import annotations

import base64
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cordon_config.tokens import TokenStore
from cordon_testing.namespaces import PrivateNetwork
from cordon_testing.proxy import TIMEOUT, RecordingUpstream, Stack, read_head, running_stack, tokens_for

pytestmark = pytest.mark.e2e

SECRET = "sk-tokens-end-secret-90ab"


@dataclass
class Setup:
    stack: Stack
    plain: RecordingUpstream
    store: TokenStore
    namespace: str

    def header(self, name: str) -> str:
        return "Basic " + base64.b64encode(f"{self.namespace}:{self.store.value(name)}".encode()).decode()


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[Setup]:
    path, namespace = tokens_for(tmp_path / "cordon.toml")
    store = TokenStore.open(path)
    for name in ("victim", "other"):
        store.ensure(name)
    with PrivateNetwork() as network, running_stack(tmp_path, secrets={"CORDON_TEST_SECRET": SECRET},
                                                    network=network) as stack, \
            RecordingUpstream(tls=False, network=network) as plain:
        yield Setup(stack, plain, store, namespace)


def _mitm(s: Setup, token: str) -> ssl.SSLSocket:
    sock = s.stack.connect()
    try:
        sock.sendall(f"CONNECT api.test:{s.stack.upstream.port} HTTP/1.1\r\nHost: api.test\r\n"
                     f"Proxy-Authorization: {s.header(token)}\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        ctx = ssl.create_default_context(cafile=str(s.stack.cordon_ca))
        return ctx.wrap_socket(sock, server_hostname="api.test")
    except BaseException:
        sock.close()
        raise


def _get(sock: socket.socket, path: str, host: str = "api.test") -> bytes:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer dummy\r\n\r\n".encode())
    return read_head(sock)


def _drain(sock: socket.socket, head: bytes) -> None:
    """Read the rest of a response whose head (and maybe part of the body) is in ``head``."""
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += sock.recv(65536)


def _closed(sock: socket.socket) -> bool:
    """True once the proxy has closed ``sock`` (bounded wait; an error counts as closed). Whatever arrives
    before the close may only be cordon's refusal (a 407), never an upstream's answer."""
    sock.settimeout(TIMEOUT)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return False
    except (OSError, ssl.SSLError):
        pass
    assert data == b"" or data.startswith(b"HTTP/1.1 407 "), data[:200]
    return True


def _open_all(s: Setup, token: str) -> tuple[ssl.SSLSocket, socket.socket, socket.socket]:
    mitm = _mitm(s, token)
    head = _get(mitm, "/before")
    assert head.startswith(b"HTTP/1.1 200 ")
    _drain(mitm, head)
    splice = s.stack.connect()
    splice.sendall(f"CONNECT other.test:{s.plain.port} HTTP/1.1\r\nProxy-Authorization: {s.header(token)}\r\n\r\n"
                   .encode())
    assert read_head(splice).startswith(b"HTTP/1.1 200 ")
    head = _get(splice, "/spliced-before", host="other.test")
    assert head.startswith(b"HTTP/1.1 200 ")
    _drain(splice, head)
    plain = s.stack.connect()
    plain.sendall(f"GET http://other.test:{s.plain.port}/plain-before HTTP/1.1\r\nHost: other.test:{s.plain.port}\r\n"
                  f"Proxy-Authorization: {s.header(token)}\r\n\r\n".encode())
    head = read_head(plain)
    assert head.startswith(b"HTTP/1.1 200 ")
    _drain(plain, head)
    return mitm, splice, plain


@pytest.mark.parametrize("how", ["revoke", "rotate"])
def test_ending_a_token_closes_every_connection_opened_with_it(setup: Setup, how: str) -> None:
    s = setup
    mitm, splice, plain = _open_all(s, "victim")
    bystander = _mitm(s, "other")
    before = len(s.stack.upstream.requests)
    getattr(s.store, how)("victim")
    # a request sent at once on the victim's MITM tunnel is not forwarded (at the latest there)
    try:
        mitm.sendall(b"GET /after HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer dummy\r\n\r\n")
    except OSError:
        pass
    for sock in (mitm, splice, plain):
        assert _closed(sock), "a connection opened with the ended token stayed open"
    assert [r.path for r in s.stack.upstream.requests[before:]] == []
    assert [r.path for r in s.plain.requests] == ["/spliced-before", "/plain-before"]
    head = _get(bystander, "/bystander")  # another token's tunnel is untouched
    assert head.startswith(b"HTTP/1.1 200 ")
    assert s.stack.upstream.requests[-1].header("Authorization") == [f"Bearer {SECRET}"]
    for sock in (mitm, splice, plain, bystander):
        sock.close()
    logs = s.stack.proxy.logs()
    assert SECRET not in logs and s.store.value("other") not in logs


def test_a_tokens_file_others_can_read_is_refused_until_chmod_600(setup: Setup) -> None:
    s = setup
    with _mitm(s, "other") as tunnel:
        s.store.path.chmod(0o644)
        assert _closed(tunnel)  # the connections opened with any token are closed too
    deadline = time.monotonic() + TIMEOUT
    while True:  # the proxy notices within a second or so
        with s.stack.connect() as sock:
            sock.sendall(f"CONNECT api.test:{s.stack.upstream.port} HTTP/1.1\r\n"
                         f"Proxy-Authorization: {s.header('other')}\r\n\r\n".encode())
            head = read_head(sock)
        if head.startswith(b"HTTP/1.1 407 "):
            break
        assert time.monotonic() < deadline, head
        time.sleep(0.1)
    logs = s.stack.proxy.logs()
    assert f"every proxy token is refused until you run chmod 600 {s.store.path}" in logs
    s.store.path.chmod(0o600)
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            tunnel = _mitm(s, "other")
            break
        except AssertionError:
            assert time.monotonic() < deadline
            time.sleep(0.1)
    head = _get(tunnel, "/after-chmod")
    assert head.startswith(b"HTTP/1.1 200 ")
    tunnel.close()


def test_tokens_turned_on_by_a_reload_close_what_was_opened_without_one(tmp_path: Path) -> None:
    import os
    import signal

    with running_stack(tmp_path, secrets={"CORDON_TEST_SECRET": SECRET}) as stack:
        sock = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT)
        sock.sendall(f"CONNECT api.test:{stack.upstream.port} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")  # no tokens.toml yet: no token needed
        with ssl.create_default_context(cafile=str(stack.cordon_ca)).wrap_socket(sock, server_hostname="api.test") as tls:
            path, _ = tokens_for(stack.proxy.config_path)
            TokenStore.open(path).ensure("default")
            assert stack.proxy.proc is not None
            os.kill(stack.proxy.proc.pid, signal.SIGHUP)
            assert _closed(tls)  # the tunnel opened without a token ends with the reload that turned tokens on
        with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT) as again:
            again.sendall(f"CONNECT api.test:{stack.upstream.port} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
            assert read_head(again).startswith(b"HTTP/1.1 407 ")
