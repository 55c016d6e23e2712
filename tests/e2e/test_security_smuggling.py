"""End-to-end: ambiguous framing is refused by the real proxy, and nothing reaches the upstream (SECURITY.md A.1).

Raw bytes are written in one go (and, for the size limits, also dribbled) on a plain socket to the proxy
listener, and inside a MITM'd TLS tunnel to a routed host whose recording upstream must see no connection
at all. Every payload must get 400 (431 for size), ``X-Cordon-Error``, and the connection closed.

Plain-listener payloads target an unrouted host on a loopback port where nothing listens, and the proxy runs
without the test-only loopback allowance: a payload that got past the parser would be answered 403 (blocked),
never 400, so the status alone proves the parser refused it before any connection was considered.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.proxy import Stack, running_stack

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
SECRET = "sk-smuggle-secret-7c1d0e"

# (id, head lines after the request line, body) — request line and Host are added per transport.
CORPUS: list[tuple[str, bytes, bytes]] = [
    ("cl-te", b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    ("te-cl", b"Transfer-Encoding: chunked\r\nContent-Length: 4\r\n", b"0\r\n\r\n"),
    ("cl-duplicate-same", b"Content-Length: 3\r\nContent-Length: 3\r\n", b"abc"),
    ("cl-duplicate-differing", b"Content-Length: 3\r\nContent-Length: 4\r\n", b"abcd"),
    ("cl-list", b"Content-Length: 3, 3\r\n", b"abc"),
    ("cl-plus", b"Content-Length: +3\r\n", b"abc"),
    ("cl-negative", b"Content-Length: -1\r\n", b""),
    ("cl-hex", b"Content-Length: 0x3\r\n", b"abc"),
    ("cl-space-before-colon", b"Content-Length : 3\r\n", b"abc"),
    ("te-chunked-chunked", b"Transfer-Encoding: chunked, chunked\r\n", b"0\r\n\r\n"),
    ("te-duplicate", b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", b"0\r\n\r\n"),
    ("te-xchunked", b"Transfer-Encoding: xchunked\r\n", b"0\r\n\r\n"),
    ("te-gzip-chunked", b"Transfer-Encoding: gzip, chunked\r\n", b"0\r\n\r\n"),
    ("te-identity", b"Transfer-Encoding: identity\r\n", b""),
    ("te-vertical-tab", b"Transfer-Encoding: \x0bchunked\r\n", b"0\r\n\r\n"),
    ("te-space-before-colon", b"Transfer-Encoding : chunked\r\n", b"0\r\n\r\n"),
    ("te-obs-fold", b"Transfer-Encoding:\r\n chunked\r\n", b"0\r\n\r\n"),
    ("obs-fold", b"X-Note: a\r\n b\r\n", b""),
    ("obs-fold-tab", b"X-Note: a\r\n\tb\r\n", b""),
    ("bare-cr-in-value", b"X-Note: a\rb\r\n", b""),
    ("bare-lf-line-end", b"X-Note: a\n", b""),
    ("nul-in-value", b"X-Note: a\x00b\r\n", b""),
    ("nul-in-name", b"X-No\x00te: a\r\n", b""),
    ("space-in-name", b"X Note: a\r\n", b""),
    ("leading-whitespace-line", b" X-Note: a\r\n", b""),
    ("chunk-size-invalid", b"Transfer-Encoding: chunked\r\n", b"zz\r\nabc\r\n0\r\n\r\n"),
    ("chunk-size-0x", b"Transfer-Encoding: chunked\r\n", b"0x3\r\nabc\r\n0\r\n\r\n"),
    ("chunk-size-negative", b"Transfer-Encoding: chunked\r\n", b"-3\r\nabc\r\n0\r\n\r\n"),
    ("chunk-size-overflow", b"Transfer-Encoding: chunked\r\n", b"fffffffffffffffff1\r\nabc\r\n0\r\n\r\n"),
    ("chunk-size-bare-lf", b"Transfer-Encoding: chunked\r\n", b"3\nabc\r\n0\r\n\r\n"),
    ("chunk-bad-terminator", b"Transfer-Encoding: chunked\r\n", b"3\r\nabcXX0\r\n\r\n"),
    ("chunk-data-too-long", b"Transfer-Encoding: chunked\r\n", b"3\r\nabcdef\r\n0\r\n\r\n"),
]

# Request-line level payloads: (id, complete request with {host} placeholder).
LINE_CORPUS: list[tuple[str, bytes]] = [
    ("te-on-http10", b"POST {path} HTTP/1.0\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
    ("bare-lf-request", b"GET {path} HTTP/1.1\nHost: {host}\n\n"),
    ("bare-cr-request-line", b"GET {path} HTTP/1.1\rHost: {host}\r\n\r\n"),
    ("double-host", b"GET {path} HTTP/1.1\r\nHost: {host}\r\nHost: {host}\r\n\r\n"),
    ("http09-style", b"GET {path}\r\n\r\n"),
    ("http2-version", b"GET {path} HTTP/2.0\r\nHost: {host}\r\n\r\n"),
    ("space-in-target", b"GET {path} x HTTP/1.1\r\nHost: {host}\r\n\r\n"),
    ("nul-in-target", b"GET {path}\x00 HTTP/1.1\r\nHost: {host}\r\n\r\n"),
]

MAX_HEAD = 65536


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("smuggling")
    with running_stack(directory, secrets={"CORDON_TEST_SECRET": SECRET}) as s:
        yield s


def _read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything until EOF (bounded); returns (data, closed) where closed means EOF/reset was seen."""
    sock.settimeout(TIMEOUT)
    chunks = []
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return b"".join(chunks), True
            chunks.append(data)
    except (ConnectionResetError, ssl.SSLEOFError, ssl.SSLZeroReturnError):
        return b"".join(chunks), True
    except TimeoutError:
        return b"".join(chunks), False


def _send(sock: socket.socket, data: bytes, pieces: int = 1) -> None:
    step = max(1, -(-len(data) // pieces))
    try:
        for i in range(0, len(data), step):
            sock.sendall(data[i : i + step])
    except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError):
        pass  # the proxy may close as soon as it has seen enough; the answer is still read below


def _plain(stack: Stack, data: bytes, pieces: int = 1) -> tuple[bytes, bool]:
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT) as sock:
        _send(sock, data, pieces)
        return _read_all(sock)


def _mitm(stack: Stack, data: bytes, pieces: int = 1) -> tuple[bytes, bool]:
    port = stack.upstream.port
    raw = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT)
    with raw:
        raw.sendall(f"CONNECT api.test:{port} HTTP/1.1\r\nHost: api.test:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = raw.recv(4096)
            assert chunk, "proxy closed during CONNECT"
            head += chunk
        assert head.startswith(b"HTTP/1.1 200"), head
        ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
        with ctx.wrap_socket(raw, server_hostname="api.test") as tls:
            _send(tls, data, pieces)
            return _read_all(tls)


def _status(response: bytes) -> int:
    assert response.startswith(b"HTTP/1.1 "), response[:200]
    return int(response[9:12])


def _assert_refused(response: bytes, closed: bool, status: int = 400) -> None:
    assert _status(response) == status, response[:300]
    assert b"\r\nX-Cordon-Error: " in response
    assert b"\r\n\r\ncordon: " in response
    assert closed, "the proxy must close the connection after refusing ambiguous framing"
    assert SECRET.encode() not in response


def _payload(head_lines: bytes, body: bytes, *, target: bytes, host: bytes) -> bytes:
    return b"POST " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + head_lines + b"\r\n" + body


def _upstream_untouched(stack: Stack, before: tuple[int, int, int]) -> None:
    up = stack.upstream
    assert (len(up.requests), up.connections, len(up.handshake_errors)) == before, "the upstream saw traffic"


def _snapshot(stack: Stack) -> tuple[int, int, int]:
    up = stack.upstream
    return len(up.requests), up.connections, len(up.handshake_errors)


# -- controls: a well-formed request is accepted on both transports (so the refusals below mean something) --


def test_control_plain_listener_reaches_the_ssrf_check(stack: Stack, dead_port: int) -> None:
    target = f"http://other.test:{dead_port}/x".encode()
    response, _ = _plain(stack, _payload(b"Content-Length: 3\r\n", b"abc", target=target, host=target[7:-2]))
    assert _status(response) == 403, response[:300]  # parsed fine; refused later as a loopback destination


def test_control_mitm_request_is_forwarded(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    host = f"api.test:{stack.upstream.port}".encode()
    data = _payload(b"Content-Length: 3\r\nConnection: close\r\n", b"abc", target=b"/ok", host=host)
    response, _ = _mitm(stack, data)
    assert _status(response) == 200, response[:300]
    assert len(stack.upstream.requests) == before + 1
    assert stack.upstream.requests[-1].body == b"abc"
    chunked = _payload(
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n",
        b"3\r\nabc\r\n0\r\n\r\n",
        target=b"/ok",
        host=host,
    )
    response, _ = _mitm(stack, chunked)
    assert _status(response) == 200, response[:300]
    assert stack.upstream.requests[-1].body == b"abc"


# -- the corpus -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "head_lines", "body"), CORPUS, ids=[c[0] for c in CORPUS])
def test_plain_listener_refuses(
    stack: Stack, dead_port: int, name: str, head_lines: bytes, body: bytes
) -> None:
    authority = f"other.test:{dead_port}".encode()
    response, closed = _plain(
        stack, _payload(head_lines, body, target=b"http://" + authority + b"/", host=authority)
    )
    _assert_refused(response, closed)


@pytest.mark.parametrize(("name", "head_lines", "body"), CORPUS, ids=[c[0] for c in CORPUS])
def test_mitm_tunnel_refuses(stack: Stack, name: str, head_lines: bytes, body: bytes) -> None:
    before = _snapshot(stack)
    host = f"api.test:{stack.upstream.port}".encode()
    response, closed = _mitm(stack, _payload(head_lines, body, target=b"/v1/smuggle", host=host))
    _assert_refused(response, closed)
    _upstream_untouched(stack, before)


@pytest.mark.parametrize(("name", "template"), LINE_CORPUS, ids=[c[0] for c in LINE_CORPUS])
def test_request_line_corpus(stack: Stack, dead_port: int, name: str, template: bytes) -> None:
    authority = f"other.test:{dead_port}".encode()
    plain = template.replace(b"{path}", b"http://" + authority + b"/").replace(b"{host}", authority)
    _assert_refused(*_plain(stack, plain))
    before = _snapshot(stack)
    host = f"api.test:{stack.upstream.port}".encode()
    tunnelled = template.replace(b"{path}", b"/v1/x").replace(b"{host}", host)
    _assert_refused(*_mitm(stack, tunnelled))
    _upstream_untouched(stack, before)


# -- size limits: one write and dribbled ------------------------------------------------------------------

SIZE_CASES = {
    "long-request-line": lambda target, host: (
        b"GET " + target + b"?" + b"a" * (MAX_HEAD + 1024) + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    ),
    "long-header-value": lambda target, host: (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\nX-Big: "
        + b"b" * (MAX_HEAD + 1024)
        + b"\r\n\r\n"
    ),
    "many-headers": lambda target, host: (
        b"GET "
        + target
        + b" HTTP/1.1\r\nHost: "
        + host
        + b"\r\n"
        + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 40) for i in range(2000))
        + b"\r\n"
    ),
    "unterminated-1MiB": lambda target, host: (
        b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nX-Big: " + b"b" * (1 << 20)
    ),
}


@pytest.mark.parametrize("pieces", [1, 64], ids=["one-write", "dribbled"])
@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_oversized_head(stack: Stack, dead_port: int, case: str, pieces: int) -> None:
    build = SIZE_CASES[case]
    authority = f"other.test:{dead_port}".encode()
    response, closed = _plain(stack, build(b"http://" + authority + b"/", authority), pieces)
    _assert_refused(response, closed, status=431)
    before = _snapshot(stack)
    host = f"api.test:{stack.upstream.port}".encode()
    response, closed = _mitm(stack, build(b"/v1/x", host), pieces)
    _assert_refused(response, closed, status=431)
    _upstream_untouched(stack, before)


def test_proxy_survived_the_corpus(stack: Stack, tmp_path: Path) -> None:
    """After all of the above the proxy still answers, and its log never shows the secret."""
    response, _ = _plain(
        stack,
        f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{stack.proxy.port}\r\nConnection: close\r\n\r\n".encode(),
    )
    assert _status(response) == 200
    assert stack.proxy.proc is not None and stack.proxy.proc.poll() is None
    assert SECRET not in stack.proxy.logs()
    assert "Traceback" not in stack.proxy.logs()


# -- responses from the upstream get the same treatment (response splitting) --------------------------------

RESPONSE_CORPUS: list[tuple[str, bytes]] = [
    (
        "te-cl-with-junk",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nHTTP/1.1 200 SMUGGLED\r\n\r\n",
    ),
    ("cl-differing", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\nokSMUGGLED"),
    ("te-gzip", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nSMUGGLED"),
    ("obs-fold", b"HTTP/1.1 200 OK\r\nX-A: a\r\n SMUGGLED\r\nContent-Length: 0\r\n\r\n"),
    ("bare-cr", b"HTTP/1.1 200 OK\r\nX-A: a\rSMUGGLED: 1\r\nContent-Length: 0\r\n\r\n"),
    (
        "huge-head",
        b"HTTP/1.1 200 OK\r\nX-Big: " + b"b" * (MAX_HEAD + 1024) + b"\r\nContent-Length: 0\r\n\r\n",
    ),
    ("bad-chunk", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nSMUGGLED\r\n0\r\n\r\n"),
]


def _raw_response(raw: bytes):  # type: ignore[no-untyped-def]
    def handler(h, seen) -> None:  # type: ignore[no-untyped-def]
        h.close_connection = True
        h.wfile.write(raw)
        h.wfile.flush()

    return handler


@pytest.mark.parametrize(("name", "raw"), RESPONSE_CORPUS, ids=[c[0] for c in RESPONSE_CORPUS])
def test_ambiguous_upstream_response_is_502(stack: Stack, name: str, raw: bytes) -> None:
    path = f"/respond/{name}"
    stack.upstream.handlers[path] = _raw_response(raw)
    host = f"api.test:{stack.upstream.port}".encode()
    request = b"GET " + path.encode() + b" HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"
    response, closed = _mitm(stack, request)
    assert _status(response) == 502, response[:300]
    assert b"X-Cordon-Error: bad-upstream-response" in response
    assert b"SMUGGLED" not in response
    assert closed
