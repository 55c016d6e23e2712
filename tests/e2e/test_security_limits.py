"""End-to-end: connection limits, slow peers and resource growth of the real proxy (SECURITY.md A.10).

* ``max_connections`` (configured small): the connection beyond it is answered 503 and closed.
* Slowloris: a request head dribbled one byte at a time must not hold a connection open past the configured
  (short) idle timeout; a connection that sends nothing is closed too.
* No file-descriptor growth and bounded RSS after 10,000 short connections (plain /health and MITM'd),
  counted from /proc/<pid>/fd and /proc/<pid>/status.
* Slow reader: a client that stalls, then reads a 64 MiB routed response 1 KiB at a time, must not make the
  proxy buffer the response: the upstream is stalled (backpressure) and the proxy's RSS stays bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.proxy import Stack, read_head, running_stack

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
MAX_CONNECTIONS = 6
IDLE = 1.0


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = f"[limits]\nmax_connections = {MAX_CONNECTIONS}"
    with running_stack(tmp_path_factory.mktemp("maxconn"), extra_config=extra) as s:
        yield s


@pytest.fixture(scope="module")
def impatient(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    extra = f"[limits]\nidle_timeout = {IDLE}\nconnect_timeout = {IDLE}"
    with running_stack(tmp_path_factory.mktemp("slowloris"), extra_config=extra) as s:
        yield s


def _health_request(port: int) -> bytes:
    return f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()


def _health_on(sock: socket.socket, port: int) -> bytes:
    sock.sendall(_health_request(port))
    return read_head(sock)


def _held_tunnel(stack: Stack) -> ssl.SSLSocket:
    """A MITM'd tunnel to the routed host, kept open (a /health connection is closed after its answer)."""
    sock = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT)
    sock.sendall(f"CONNECT api.test:{stack.upstream.port} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode())
    assert read_head(sock).startswith(b"HTTP/1.1 200 ")
    return ssl.create_default_context(cafile=str(stack.cordon_ca)).wrap_socket(sock, server_hostname="api.test")


def _get_in(tunnel: ssl.SSLSocket) -> bytes:
    tunnel.sendall(b"GET /held HTTP/1.1\r\nHost: api.test\r\n\r\n")
    head = read_head(tunnel)
    length = int(next(v for k, _, v in (line.partition(b":") for line in head.split(b"\r\n"))
                      if k.lower() == b"content-length"))
    body = head.split(b"\r\n\r\n", 1)[1]
    while len(body) < length:
        body += tunnel.recv(65536)
    return head


def test_max_connections_answers_503(limited: Stack) -> None:
    port = limited.proxy.port
    held: list[ssl.SSLSocket] = []
    try:
        for _ in range(MAX_CONNECTIONS):
            held.append(_held_tunnel(limited))  # accepted, handshaken and kept open
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as extra:
            with contextlib.suppress(OSError):
                extra.sendall(_health_request(port))
            answer = read_head(extra)
            assert answer.startswith(b"HTTP/1.1 503 "), answer
            assert b"X-Cordon-Error: too-many-connections" in answer
            extra.settimeout(TIMEOUT)
            with contextlib.suppress(ConnectionResetError):
                while extra.recv(4096):
                    pass  # the proxy closes it (EOF reached within the timeout)
        for tunnel in held:  # the held connections still work
            assert _get_in(tunnel).startswith(b"HTTP/1.1 200 ")
        held.pop().close()
        deadline = time.monotonic() + TIMEOUT
        while True:  # a slot frees up once the proxy has seen the close
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as again:
                if _health_on(again, port).startswith(b"HTTP/1.1 200 "):
                    break
            assert time.monotonic() < deadline, "the freed connection slot was never reused"
            time.sleep(0.05)
    finally:
        for sock in held:
            sock.close()


def _closed_within(sock: socket.socket, seconds: float, drip: bytes = b"") -> bool:
    """Send ``drip`` one byte every 0.2 s for up to ``seconds``; True if the proxy closed the connection."""
    deadline = time.monotonic() + seconds
    sock.settimeout(0.2)
    position = 0
    while time.monotonic() < deadline:
        try:
            data = sock.recv(4096)
            if not data or data.startswith(b"HTTP/1.1 4"):
                return True
        except TimeoutError:
            pass
        except (ConnectionResetError, BrokenPipeError):
            return True
        if position < len(drip):
            try:
                sock.send(drip[position : position + 1])
            except (BrokenPipeError, ConnectionResetError):
                return True
            position += 1
    return False


def test_silent_connection_is_closed(impatient: Stack) -> None:
    with socket.create_connection(("127.0.0.1", impatient.proxy.port), timeout=TIMEOUT) as sock:
        assert _closed_within(sock, 6 * IDLE), "a silent connection stayed open"


def test_slowloris_head_is_timed_out(impatient: Stack) -> None:
    port = impatient.proxy.port
    drip = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode() + b"a" * 200
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        assert _closed_within(sock, 4 * IDLE, drip), "a slowloris head kept the connection open"


def test_stalled_request_body_is_timed_out(impatient: Stack) -> None:
    """Slow POST (R-U-Dead-Yet): head complete, 10 of 100 body bytes, then silence."""
    port, up = impatient.proxy.port, impatient.upstream.port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw:
        raw.sendall(f"CONNECT api.test:{up} HTTP/1.1\r\nHost: api.test:{up}\r\n\r\n".encode())
        assert read_head(raw).startswith(b"HTTP/1.1 200 ")
        ctx = ssl.create_default_context(cafile=str(impatient.cordon_ca))
        with ctx.wrap_socket(raw, server_hostname="api.test") as tls:
            head = f"POST /slow-body HTTP/1.1\r\nHost: api.test:{up}\r\nContent-Length: 100\r\n\r\n"
            tls.sendall(head.encode() + b"x" * 10)
            closed = False
            deadline = time.monotonic() + 4 * IDLE
            tls.settimeout(0.2)
            while time.monotonic() < deadline and not closed:
                try:
                    data = tls.recv(4096)
                    closed = not data or data.startswith(b"HTTP/1.1 4")
                except TimeoutError:
                    pass
                except (ConnectionResetError, ssl.SSLError):
                    closed = True
            assert closed, "a stalled request body kept the connection open"


def test_slowloris_inside_mitm_tunnel_is_timed_out_too(impatient: Stack) -> None:
    """The connection that opened a tunnel but never starts TLS is closed (handshake timeout / idle)."""
    port, up = impatient.proxy.port, impatient.upstream.port
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        sock.sendall(f"CONNECT api.test:{up} HTTP/1.1\r\nHost: api.test:{up}\r\n\r\n".encode())
        assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        assert _closed_within(sock, 6 * IDLE), "a tunnel without a TLS handshake stayed open"


# -- resource growth ----------------------------------------------------------------------------------------


def _fd_count(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/fd").iterdir()))


def _rss_kib(pid: int, field: str = "VmRSS") -> int:
    """``VmRSS`` (or ``VmHWM``, the peak) of ``pid`` in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field}")


def _churn(stack: Stack, plain: int, mitm: int) -> None:
    port = stack.proxy.port
    request = _health_request(port)[:-2] + b"Connection: close\r\n\r\n"
    for _ in range(plain):
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(request)
            while sock.recv(65536):
                pass
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    for _ in range(mitm):
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=TIMEOUT)
        conn.set_tunnel("api.test", stack.upstream.port)
        try:
            conn.request("GET", "/soak", headers={"Connection": "close"})
            response = conn.getresponse()
            response.read()
            assert response.status == 200
        finally:
            conn.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_no_fd_or_memory_growth_after_many_short_connections(limited: Stack) -> None:
    pid = limited.proxy.proc.pid  # type: ignore[union-attr]
    try:
        _fd_count(pid)
    except PermissionError:  # pragma: no cover - a non-dumpable process's /proc/<pid>/fd is root-only
        pytest.skip("cannot read /proc/<pid>/fd of the non-dumpable proxy as a non-root user")
    _churn(limited, plain=200, mitm=40)  # warm up: caches, pools, allocator arenas
    time.sleep(0.2)
    fds_before, rss_before = _fd_count(pid), _rss_kib(pid)
    _churn(limited, plain=9000, mitm=1000)  # 10,000 connections
    deadline = time.monotonic() + TIMEOUT
    while _fd_count(pid) > fds_before and time.monotonic() < deadline:
        time.sleep(0.05)  # closes are processed asynchronously
    fds_after, rss_after = _fd_count(pid), _rss_kib(pid)
    assert fds_after <= fds_before, f"fd growth: {fds_before} -> {fds_after}"
    assert rss_after - rss_before < 16 * 1024, f"RSS grew {rss_before} -> {rss_after} KiB"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_running_proxy_is_hardened(limited: Stack) -> None:
    """`cordon start` called harden_process(): no core dumps, not dumpable, fd soft limit raised to hard."""
    pid = limited.proxy.proc.pid  # type: ignore[union-attr]
    limits = Path(f"/proc/{pid}/limits").read_text()
    core = next(line for line in limits.splitlines() if line.startswith("Max core file size"))
    assert core.split()[4:6] == ["0", "0"], core
    files = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = files.split()[3:5]
    assert soft == hard, files
    assert "dumpable=0" in limited.proxy.logs()
    if os.getuid() != 0:  # a non-dumpable process's /proc entries belong to root
        assert Path(f"/proc/{pid}/fd").stat().st_uid == 0


# -- slow reader --------------------------------------------------------------------------------------------

BIG = 64 << 20  # the routed response
BLOCK = 1 << 16


class _CountingStream:
    """Upstream handler: ``BIG`` bytes with a Content-Length, counting what the upstream managed to send."""

    def __init__(self) -> None:
        self.sent = 0
        self.lock = threading.Lock()

    def __call__(self, h, seen) -> None:  # type: ignore[no-untyped-def]
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(BIG))
        h.end_headers()
        block = b"\0" * BLOCK
        for _ in range(BIG // BLOCK):
            h.wfile.write(block)  # blocks once the proxy stops reading (until the socket timeout)
            with self.lock:
                self.sent += BLOCK

    def count(self) -> int:
        with self.lock:
            return self.sent


def _until_stalled(upstream: _CountingStream) -> int:
    """Poll until the upstream has sent nothing more for 1 s (or sent everything); the count it stalled at."""
    deadline = time.monotonic() + TIMEOUT
    last, stable = -1, 0
    while stable < 10 and time.monotonic() < deadline:
        now = upstream.count()
        stable = stable + 1 if now == last else 0
        last = now
        if now >= BIG:
            break
        time.sleep(0.1)
    return last


@pytest.fixture
def roomy(tmp_path: Path) -> Iterator[Stack]:
    with running_stack(tmp_path) as s:
        yield s


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_slow_reader_of_a_large_response_keeps_rss_bounded(roomy: Stack) -> None:
    """A 64 MiB routed response to a client that stalls, then reads 1 KiB at a time: the proxy stops reading
    the upstream (backpressure) instead of buffering the response, so its RSS does not grow with the size."""
    pid = roomy.proxy.proc.pid  # type: ignore[union-attr]
    big = _CountingStream()
    roomy.upstream.handlers["/big"] = big
    port, up = roomy.proxy.port, roomy.upstream.port
    _churn(roomy, plain=20, mitm=5)  # warm up the TLS paths first
    rss_before = _rss_kib(pid)
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)  # a small client window, set before connect
    raw.settimeout(TIMEOUT)
    raw.connect(("127.0.0.1", port))
    with raw:
        raw.sendall(f"CONNECT api.test:{up} HTTP/1.1\r\nHost: api.test:{up}\r\n\r\n".encode())
        assert read_head(raw).startswith(b"HTTP/1.1 200 ")
        ctx = ssl.create_default_context(cafile=str(roomy.cordon_ca))
        with ctx.wrap_socket(raw, server_hostname="api.test") as tls:
            tls.sendall(b"GET /big HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
            received = len(tls.recv(1024))  # the head (and maybe some body): the response is under way
            stalled_at = _until_stalled(big)  # the client reads nothing meanwhile
            rss_stalled = _rss_kib(pid)
            for _ in range(100):  # then a slow reader: 1 KiB at a time
                received += len(tls.recv(1024))
                time.sleep(0.01)
            rss_slow = _rss_kib(pid)
            while chunk := tls.recv(1 << 20):  # finally read the rest: the response is complete
                received += len(chunk)
    peak = _rss_kib(pid, "VmHWM")
    for label, rss in (("while stalled", rss_stalled), ("while reading slowly", rss_slow)):
        assert rss - rss_before < 32 * 1024, f"proxy RSS grew {rss_before} -> {rss} KiB {label}"
    assert peak - rss_before < 32 * 1024, f"proxy peak RSS {peak} KiB (before: {rss_before} KiB)"
    assert stalled_at < BIG // 2, f"the upstream sent {stalled_at} of {BIG} bytes to a client that read nothing"
    assert received > BIG  # the head and the whole body went through
