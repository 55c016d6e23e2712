"""Upstream connections: one verified client ``SSLContext``, name resolution, an idle keep-alive pool.

* :func:`client_context` is built once at start: the system roots (``ssl.create_default_context``, which also
  honours OpenSSL's ``SSL_CERT_FILE``) plus ``[tls] upstream_ca_file``; ``CERT_REQUIRED`` and
  ``check_hostname`` always. There is no switch to turn verification off.
* :class:`Resolver` resolves a name once; the proxy connects to the address it checked (no second lookup).
* :class:`UpstreamPool` keeps idle connections per (host, port), at most ``max_idle`` each, for
  ``idle_timeout`` seconds.

Test-only knob (never set in product, not documented for users): ``CORDON_TEST_RESOLVE="api.test=127.0.0.1,
other.test=127.0.0.1"`` maps names to addresses instead of DNS, so tests never look up a real name. It is a
resolver override, not an "insecure" switch: TLS is still verified for the route host.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

from cordon_proxy.core.policy import literal_address

__all__ = [
    "TEST_RESOLVE_ENV",
    "Resolver",
    "Upstream",
    "UpstreamError",
    "UpstreamPool",
    "client_context",
    "resolve_overrides",
]

TEST_RESOLVE_ENV = "CORDON_TEST_RESOLVE"
IPAddress = IPv4Address | IPv6Address
READ_LIMIT = 2**18


class UpstreamError(Exception):
    """Connecting failed; ``code`` is the X-Cordon-Error code, the message is one safe line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def client_context(upstream_ca_file: Path | None = None) -> ssl.SSLContext:
    """The one client context for every upstream: system roots (+ extra roots), verification always on."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if upstream_ca_file is not None:
        ctx.load_verify_locations(cafile=str(upstream_ca_file))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = True
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def resolve_overrides(env: Mapping[str, str]) -> dict[str, list[IPAddress]]:
    """Parse the test-only ``CORDON_TEST_RESOLVE`` variable (``name=addr[,name=addr...]``)."""
    text = env.get(TEST_RESOLVE_ENV, "")
    table: dict[str, list[IPAddress]] = {}
    for item in text.split(","):
        name, sep, address = item.strip().partition("=")
        if not sep:
            continue
        table.setdefault(name.strip().lower().rstrip("."), []).append(ipaddress.ip_address(address.strip()))
    return table


class Resolver:
    """getaddrinfo on the event loop's executor, with the test-only override table consulted first."""

    def __init__(self, overrides: Mapping[str, list[IPAddress]] | None = None) -> None:
        self.overrides = dict(overrides or {})

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address of ``host`` (order kept, duplicates dropped); raises UpstreamError."""
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        override = self.overrides.get(host.lower().rstrip("."))
        if override is not None:
            return list(override)
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise UpstreamError("upstream-failed", f"upstream {host}: name did not resolve ({exc})") from None
        seen: list[IPAddress] = []
        for _family, _type, _proto, _canon, sockaddr in infos:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            if address not in seen:
                seen.append(address)
        return seen


@dataclass(eq=False)
class Upstream:
    """One upstream connection (TLS or plain)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    key: tuple[str, int, str | None]
    idle_since: float = field(default=0.0)
    reused: bool = False
    write_failed: bool = False

    def alive(self) -> bool:
        """Usable for another request: open, not at EOF, and nothing unsolicited buffered while idle."""
        if self.write_failed or self.writer.is_closing() or self.reader.at_eof():
            return False
        return not getattr(self.reader, "_buffer", b"")  # bytes nobody asked for: never parse them as a reply

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.transport.abort()


def _nodelay(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class UpstreamPool:
    """Opens and pools upstream connections (idle keep-alive connections per (host, port, tls name))."""

    def __init__(
        self,
        ctx: ssl.SSLContext,
        resolver: Resolver,
        *,
        connect_timeout: float = 10.0,
        max_idle: int = 64,
        idle_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.resolver = resolver
        self.connect_timeout = connect_timeout
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.clock = clock  # injectable for tests
        self._idle: dict[tuple[str, int, str | None], list[Upstream]] = {}

    def _checkout(self, key: tuple[str, int, str | None]) -> Upstream | None:
        idle = self._idle.get(key)
        now = self.clock()
        while idle:
            conn = idle.pop()
            if conn.alive() and now - conn.idle_since < self.idle_timeout:
                conn.reused = True
                return conn
            conn.close()
        return None

    def checkout(self, host: str, port: int, tls_host: str) -> Upstream | None:
        """A pooled, still usable TLS connection for (``host``, ``port``, ``tls_host``), or None (no await)."""
        return self._checkout((host, port, tls_host))

    async def connect_tls(self, host: str, port: int, tls_host: str, *, fresh: bool = False) -> Upstream:
        """A pooled (unless ``fresh``) or new TLS connection verified for ``tls_host`` (SNI = ``tls_host``)."""
        key = (host, port, tls_host)
        conn = None if fresh else self._checkout(key)
        if conn is not None:
            return conn
        addresses = await self.resolve(host, port)
        return await self._open(key, addresses, port, tls_host)

    async def connect_plain(self, host: str, port: int, addresses: tuple[IPAddress, ...]) -> Upstream:
        """A new plain TCP connection to the first reachable of ``addresses`` (resolved here when empty)."""
        if not addresses:
            addresses = tuple(await self.resolve(host, port))
        return await self._open((host, port, None), addresses, port, None)

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` (within the connect timeout); raises :class:`UpstreamError`."""
        try:
            async with asyncio.timeout(self.connect_timeout):
                return await self.resolver.resolve(host, port)
        except TimeoutError:
            raise UpstreamError(
                "upstream-timeout", f"upstream {host} timed out after {self.connect_timeout:g} s (resolving)"
            ) from None

    async def _open(
        self, key: tuple[str, int, str | None], addresses: list[IPAddress] | tuple[IPAddress, ...], port: int,
        tls_host: str | None,
    ) -> Upstream:
        host = key[0]
        if not addresses:
            raise UpstreamError("upstream-failed", f"upstream {host}: name did not resolve")
        last: UpstreamError | None = None
        for address in addresses:
            try:
                async with asyncio.timeout(self.connect_timeout):
                    if tls_host is None:
                        reader, writer = await asyncio.open_connection(str(address), port, limit=READ_LIMIT)
                    else:
                        reader, writer = await asyncio.open_connection(
                            str(address), port, ssl=self.ctx, server_hostname=tls_host, limit=READ_LIMIT,
                            ssl_handshake_timeout=self.connect_timeout,
                        )
            except TimeoutError:
                last = UpstreamError(
                    "upstream-timeout", f"upstream {host} timed out after {self.connect_timeout:g} s (connecting)"
                )
                continue
            except ssl.SSLCertVerificationError as exc:
                reason = exc.verify_message or exc.reason or "certificate verify failed"
                raise UpstreamError("upstream-tls", f"upstream TLS verification failed for {host}: {reason}") from None
            except ssl.SSLError as exc:
                reason = exc.reason or str(exc)
                raise UpstreamError("upstream-tls", f"upstream TLS handshake with {host} failed: {reason}") from None
            except OSError as exc:
                what = exc.strerror or type(exc).__name__
                last = UpstreamError("upstream-failed", f"upstream {host}: {what}")
                continue
            _nodelay(writer)
            return Upstream(reader, writer, key)
        assert last is not None
        raise last

    def release(self, conn: Upstream, reusable: bool) -> None:
        """Put ``conn`` back in the pool when ``reusable`` (and alive and TLS), else close it."""
        if not reusable or conn.key[2] is None or not conn.alive():
            conn.close()
            return
        idle = self._idle.setdefault(conn.key, [])
        if len(idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.clock()
        idle.append(conn)

    def sweep(self) -> None:
        """Close idle connections that expired or that the upstream closed."""
        now = self.clock()
        for key, idle in list(self._idle.items()):
            keep = [c for c in idle if c.alive() and now - c.idle_since < self.idle_timeout]
            for conn in idle:
                if conn not in keep:
                    conn.close()
            if keep:
                self._idle[key] = keep
            else:
                del self._idle[key]

    def close_all(self) -> None:
        """Close every idle connection."""
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
