"""Small blocking HTTP/1.1 clients over raw sockets (CONNECT + TLS), timed with perf_counter.

Deliberately minimal so that the client's own cost is small and identical for every target.
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from dataclasses import dataclass

TIMEOUT = 15.0
_EVENT = re.compile(rb"data: (\d+)\n\n")


@dataclass(frozen=True)
class Target:
    """How to reach the origin: directly (``proxy`` None) or through an HTTP CONNECT proxy."""

    name: str
    proxy: tuple[str, int] | None
    ca_file: str  # the CA the client trusts for the TLS leg it sees (origin CA or the proxy's CA)
    proxy_authorization: str | None = None  # sent with CONNECT (a proxy token)


class HTTPError(RuntimeError):
    """A response that is not what the benchmark expects."""


def client_context(ca_file: str) -> ssl.SSLContext:
    """A verifying client context trusting only ``ca_file`` (HTTP/1.1 ALPN)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _read_head(sock: socket.socket, buf: bytearray) -> bytes:
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[: end + 4])
            del buf[: end + 4]
            return head
        chunk = sock.recv(65536)
        if not chunk:
            raise HTTPError("connection closed before the response head")
        buf += chunk


def open_tunnel(target: Target, host: str, port: int) -> tuple[socket.socket, bytearray]:
    """TCP connection to the proxy with a completed CONNECT (or straight to the origin when direct)."""
    if target.proxy is None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, bytearray()
    sock = socket.create_connection(target.proxy, timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    auth = f"Proxy-Authorization: {target.proxy_authorization}\r\n" if target.proxy_authorization else ""
    sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n{auth}\r\n".encode())
    buf = bytearray()
    head = _read_head(sock, buf)
    if not head.split(b" ", 2)[1].startswith(b"2"):
        sock.close()
        raise HTTPError(f"CONNECT refused: {head.splitlines()[0].decode(errors='replace')}")
    if buf:
        sock.close()
        raise HTTPError("proxy sent bytes after the CONNECT response")
    return sock, buf


class Connection:
    """One TLS connection to ``host:port`` (through the target's proxy when it has one)."""

    def __init__(self, target: Target, host: str, port: int, ctx: ssl.SSLContext) -> None:
        t0 = time.perf_counter()
        raw, _ = open_tunnel(target, host, port)
        t1 = time.perf_counter()
        try:
            self.sock = ctx.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        t2 = time.perf_counter()
        self.phases = {"connect": t1 - t0, "tls": t2 - t1}
        self.host, self.port = host, port
        self.buf = bytearray()

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request_bytes(self, path: str, authorization: str = "Bearer dummy-key") -> bytes:
        """The GET request bytes for ``path``."""
        return (f"GET {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUser-Agent: cordon-bench\r\n"
                f"Authorization: {authorization}\r\nAccept: */*\r\n\r\n").encode()

    def get(self, path: str, authorization: str = "Bearer dummy-key") -> tuple[int, bytes]:
        """Send one GET and read the whole (Content-Length framed) response."""
        self.sock.sendall(self.request_bytes(path, authorization))
        head = _read_head(self.sock, self.buf)
        status = int(head.split(b" ", 2)[1])
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        if match is None:
            raise HTTPError(f"no Content-Length in response to {path}")
        length = int(match.group(1))
        while len(self.buf) < length:
            chunk = self.sock.recv(max(65536, length - len(self.buf)))
            if not chunk:
                raise HTTPError("connection closed inside the body")
            self.buf += chunk
        body = bytes(self.buf[:length])
        del self.buf[:length]
        return status, body


def injection_seen(target: Target, host: str, port: int) -> str:
    """What the origin's ``/injected`` says about the Authorization it got through ``target``: ``injected``
    (the real secret; nginx compares it, since an echo would come back masked through cordon), ``dummy`` (the
    client's dummy key), ``other``, or what went wrong."""
    ctx = client_context(target.ca_file)
    try:
        with Connection(target, host, port, ctx) as conn:
            status, body = conn.get("/injected")
    except (OSError, HTTPError) as exc:
        return f"request failed: {type(exc).__name__}: {str(exc)[:120]}"
    return body.decode("ascii", "replace") if status == 200 else f"HTTP {status}"


def check_injection(target: Target, host: str, port: int) -> str | None:
    """None when the origin got exactly the real secret through ``target``, else what went wrong."""
    seen = injection_seen(target, host, port)
    if seen == "injected":
        return None
    if seen == "dummy":
        return "the client's dummy key reached the origin (no injection)"
    if seen == "other":
        return "origin saw a different Authorization (not the secret)"
    return f"injection check: {seen}"


def warm_latencies(target: Target, host: str, port: int, n: int, warmup: int = 20) -> list[float]:
    """Seconds per request of ``n`` sequential GET /small on one kept-alive connection."""
    ctx = client_context(target.ca_file)
    out: list[float] = []
    with Connection(target, host, port, ctx) as conn:
        for _ in range(warmup):
            conn.get("/small")
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = conn.get("/small")
            out.append(time.perf_counter() - t0)
            if status != 200:
                raise HTTPError(f"/small returned {status}")
    return out


def new_connection(target: Target, host: str, port: int, ctx: ssl.SSLContext) -> dict[str, float]:
    """One CONNECT + TLS + GET /small + close, with the phase split (seconds)."""
    t0 = time.perf_counter()
    with Connection(target, host, port, ctx) as conn:
        t1 = time.perf_counter()
        status, _ = conn.get("/small")
        t2 = time.perf_counter()
        phases = dict(conn.phases)
    if status != 200:
        raise HTTPError(f"/small returned {status}")
    phases["request"] = t2 - t1
    phases["total"] = time.perf_counter() - t0
    return phases


def new_connections(target: Target, host: str, port: int, n: int) -> list[dict[str, float]]:
    """``n`` sequential new connections (after one warm-up so the leaf is cached)."""
    ctx = client_context(target.ca_file)
    new_connection(target, host, port, ctx)
    return [new_connection(target, host, port, ctx) for _ in range(n)]


@dataclass
class SSEResult:
    """First-event time (from sending the request) and per-event delay (arrival − embedded timestamp)."""

    first_event: float
    delays: list[float]


def sse_run(target: Target, host: str, port: int, events: int) -> SSEResult:
    """Read one SSE response of ``events`` events and time each event's arrival.

    A ``GET /ping`` on the same connection first, so that the timed stream measures relaying (buffering,
    Nagle) rather than the proxy's upstream connection set-up, which the new-connection figures cover.
    """
    ctx = client_context(target.ca_file)
    with Connection(target, host, port, ctx) as conn:
        status, _ = conn.get("/ping")
        if status != 200:
            raise HTTPError(f"/ping returned {status}")
        sock = conn.sock
        t_send = time.perf_counter()
        sock.sendall(conn.request_bytes("/sse"))
        buf = bytearray()
        first: float | None = None
        delays: list[float] = []
        pos = 0
        deadline = time.monotonic() + TIMEOUT
        while len(delays) < events and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            now_ns, now_pc = time.time_ns(), time.perf_counter()
            if not chunk:
                break
            buf += chunk
            for match in _EVENT.finditer(buf, pos):
                if first is None:
                    first = now_pc - t_send
                delays.append((now_ns - int(match.group(1))) / 1e9)
                pos = match.end()
    if first is None or len(delays) < events:
        raise HTTPError(f"SSE: got {len(delays)} of {events} events")
    return SSEResult(first, delays)


def origin_accepts(direct: Target, host: str, port: int) -> int:
    """Connections nginx has accepted so far (stub_status), counting the one used to ask."""
    with Connection(direct, host, port, client_context(direct.ca_file)) as conn:
        status, body = conn.get("/nginx_status")
    if status != 200:
        raise HTTPError(f"/nginx_status returned {status}")
    return int(body.split(b"\n")[2].split()[0])
