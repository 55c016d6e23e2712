"""End-to-end: the SSRF denylist and the /health Host check of the real proxy (SECURITY.md A.5, A.6).

Only loopback in disguise is ever used as a destination, on a port where nothing listens, with the proxy's
test-only loopback allowance OFF. A destination that got past the denylist would be answered 502 (connection
refused), so a 403 proves the proxy refused before connecting. The classifier itself is covered range by
range, as a pure function, in packages/cordon-proxy/tests/test_policy.py.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from cordon_testing.proxy import Stack, running_stack

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0

DISGUISED = [
    "127.1",
    "2130706433",
    "[::ffff:127.0.0.1]",
    "localhost",
    "[::1]",
    "0x7f.1",
    "0177.0.0.1",
    "127.0.0.1",
    "LOCALHOST.",
    "foo.localhost",
    "[::ffff:7f00:1]",
    "[::127.0.0.1]",
    "[::]",
    "0",
    "other.test",
]  # other.test resolves to 127.0.0.1 through the test resolver override


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("ssrf")
    with running_stack(directory) as s:
        yield s


def _exchange(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _assert_blocked(response: bytes) -> None:
    assert response.startswith(b"HTTP/1.1 403 "), response[:300]
    assert b"\r\nX-Cordon-Error: blocked\r\n" in response
    assert (
        b"is not allowed (loopback address)" in response
        or b"is not allowed (unspecified address)" in response
    )


@pytest.mark.parametrize("host", DISGUISED)
def test_connect_to_loopback_in_disguise_is_refused(stack: Stack, dead_port: int, host: str) -> None:
    response = _exchange(
        stack.proxy.port, f"CONNECT {host}:{dead_port} HTTP/1.1\r\nHost: {host}:{dead_port}\r\n\r\n".encode()
    )
    _assert_blocked(response)


@pytest.mark.parametrize("host", DISGUISED)
def test_absolute_form_to_loopback_in_disguise_is_refused(stack: Stack, dead_port: int, host: str) -> None:
    request = f"GET http://{host}:{dead_port}/latest/meta-data/ HTTP/1.1\r\nHost: {host}:{dead_port}\r\n\r\n"
    _assert_blocked(_exchange(stack.proxy.port, request.encode()))


def test_no_connection_was_attempted(stack: Stack, dead_port: int) -> None:
    """The log shows only blocked destinations: no connect failure, i.e. no connection attempt."""
    for host in DISGUISED:  # every disguise in both forms, whichever tests ran before this one
        target = f"{host}:{dead_port}"
        _exchange(stack.proxy.port, f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        _exchange(stack.proxy.port, f"GET http://{target}/ HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    logs = stack.proxy.logs()
    assert "error=blocked" in logs
    assert "upstream-failed" not in logs


def test_self_connect_is_refused(stack: Stack) -> None:
    port = stack.proxy.port
    for host in ("127.0.0.1", "localhost", "127.1"):
        response = _exchange(port, f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        assert response.startswith(b"HTTP/1.1 403 "), response[:200]
        response = _exchange(
            port, f"GET http://{host}:{port}/health HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
        )
        assert response.startswith(b"HTTP/1.1 403 "), response[:200]


def test_routed_host_is_not_subject_to_the_denylist(stack: Stack) -> None:
    """Control: api.test also resolves to 127.0.0.1 but is a route, so the CONNECT is answered 200."""
    port = stack.upstream.port
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n".encode())
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


# -- /health and origin-form (DNS rebinding, browsers) ---------------------------------------------------


def _get(port: int, target: str, host: str | None, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.append("Connection: close")
    return _exchange(port, ("\r\n".join(lines) + "\r\n\r\n").encode())


def test_health_answers_on_its_own_names(stack: Stack) -> None:
    port = stack.proxy.port
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        response = _get(port, "/health", host)
        assert response.startswith(b"HTTP/1.1 200 "), response[:200]
        assert b'"status": "ok"' in response or b'"status":"ok"' in response


@pytest.mark.parametrize(
    "host",
    [
        "rebind.evil.test:{port}",
        "evil.test",
        "127.0.0.1.nip.io:{port}",
        "127.0.0.1:1",
        "[::1]:{port}",
        "",
        "127.0.0.1:{port}, evil.test",
        "LOCALHOST.evil.test:{port}",
        None,
    ],
)
def test_health_with_a_foreign_host_is_refused(stack: Stack, host: str | None) -> None:
    port = stack.proxy.port
    response = _get(port, "/health", None if host is None else host.format(port=port))
    assert response[9:10] == b"4", response[:200]
    assert b'"status"' not in response


def test_other_origin_form_requests_are_refused(stack: Stack) -> None:
    port = stack.proxy.port
    before = len(stack.upstream.requests)
    for method, target in (
        ("GET", "/v1/messages"),
        ("POST", "/health"),
        ("GET", "/health/../v1"),
        ("OPTIONS", "*"),
    ):
        response = _get(port, target, "evil.test", method)
        assert response[9:10] == b"4", (method, target, response[:200])
    assert len(stack.upstream.requests) == before


def test_listener_is_bound_to_127_0_0_1_only(stack: Stack) -> None:
    """Another loopback address (127.0.0.2) and ::1 are refused: the proxy is not bound to 0.0.0.0 or ::."""
    port = stack.proxy.port
    for family, address in ((socket.AF_INET, "127.0.0.2"), (socket.AF_INET6, "::1")):
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(TIMEOUT)
            try:
                sock.connect((address, port))
            except OSError:
                continue  # refused (or no IPv6 here): not listening on that address
            raise AssertionError(f"the proxy accepted a connection on {address}:{port}")
