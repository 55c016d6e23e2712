"""Upstream connections: one verified client ``SSLContext``, name resolution, an idle keep-alive pool.

* :func:`upstream_trust` is built once at start, and upstream trust is cordon's own choice: the system store as
  cordon finds it (:func:`cordon_ca.find_system_bundle`, never ``SSL_CERT_FILE``/``SSL_CERT_DIR`` or any other
  variable the proxy inherited) plus ``[tls] upstream_ca_file``, minus every cordon CA (of any scope: a chain
  that ends at one is refused, and named as such). ``CERT_REQUIRED`` and ``check_hostname`` always; there is
  no switch to turn verification off. An ``upstream_ca_file`` holding a cordon CA is a configuration error.
* :class:`Resolver` resolves a name once; the proxy connects to the address it checked (no second lookup).
* :class:`UpstreamPool` keeps idle connections per (host, port), at most ``max_idle`` each, for
  ``idle_timeout`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

from cordon_config.hosts import comparable_host

from cordon_proxy.core.policy import literal_address

__all__ = [
    "Resolver",
    "Upstream",
    "UpstreamError",
    "UpstreamPool",
    "UpstreamTrust",
    "UpstreamTrustError",
    "client_context",
    "upstream_trust",
]

IPAddress = IPv4Address | IPv6Address
READ_LIMIT = 2**18


class UpstreamError(Exception):
    """Connecting failed; ``code`` is the X-Cordon-Error code, the message is one safe line."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UpstreamTrustError(Exception):
    """The roots for upstream verification cannot be built (one line, plus the fix)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True)
class UpstreamTrust:
    """``context`` verifies every upstream; ``cordon`` trusts only cordon CAs, to name why a chain that ends at
    one failed (None when cordon knows of none)."""

    context: ssl.SSLContext
    cordon: ssl.SSLContext | None = None


def _certificates(path: Path, what: str) -> tuple[list[Any], list[Any]]:
    """The certificates in ``path`` as (others, cordon CAs), parsed by cordon-ca."""
    from cordon_ca.recognise import split_cordon_cas

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UpstreamTrustError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        with warnings.catch_warnings():  # a root with a negative serial, seen in real stores, is still a root
            warnings.simplefilter("ignore")
            return split_cordon_cas(data)
    except ValueError:
        raise UpstreamTrustError(f"{what} {path} is not a PEM certificate bundle") from None


def _context(certs: Iterable[Any], *, check_hostname: bool = True) -> ssl.SSLContext:
    from cordon_ca.recognise import der_bundle

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no default paths: nothing from the environment
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.check_hostname = check_hostname
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["http/1.1"])
    data = der_bundle(certs)
    if data:
        ctx.load_verify_locations(cadata=data)
    return ctx


def upstream_trust(
    upstream_ca_file: Path | None = None,
    *,
    cordon_cas: Iterable[Path] = (),
    system_bundle: Path | bool | None = True,
) -> UpstreamTrust:
    """The roots for every upstream: the system store plus ``upstream_ca_file``, never a cordon CA.

    ``cordon_cas`` are CA certificates cordon knows to be its own (the scope's CA), used only to say why a
    chain failed. ``system_bundle``: True finds the system store, a path uses that file, None/False none.
    Raises UpstreamTrustError (unreadable files, or a cordon CA in ``upstream_ca_file``).
    """
    from cordon_ca import find_system_bundle

    system = find_system_bundle() if system_bundle is True else (system_bundle or None)
    trusted: list[Any] = []  # cryptography certificates (cordon-ca's); the proxy never imports cryptography
    cordon: list[Any] = []
    if isinstance(system, Path):
        others, found = _certificates(system, "the system CA bundle")
        trusted += others
        cordon += found  # a cordon CA in the OS store (cordon-ca trust install) is for clients, not upstreams
    if upstream_ca_file is not None:
        others, found = _certificates(upstream_ca_file, "[tls] upstream_ca_file")
        if found:
            name = found[0].subject.rfc4514_string()
            raise UpstreamTrustError(
                f"[tls] upstream_ca_file {upstream_ca_file} contains a cordon CA ({name}); cordon never trusts "
                "its own CA upstream",
                f"remove that certificate from {upstream_ca_file} (the file is for the CA of a private upstream)",
            )
        if not others:
            raise UpstreamTrustError(
                f"[tls] upstream_ca_file {upstream_ca_file} contains no PEM certificate",
                "point it at the PEM CA certificate of your private upstream, or remove it: "
                "cordon config unset tls.upstream_ca_file",
            )
        trusted += others
    for path in cordon_cas:
        with contextlib.suppress(UpstreamTrustError):
            cordon += _certificates(Path(path), "a cordon CA")[1]
    return UpstreamTrust(_context(trusted), _context(cordon, check_hostname=False) if cordon else None)


def client_context(upstream_ca_file: Path | None = None) -> ssl.SSLContext:
    """The one client context for every upstream (see :func:`upstream_trust`)."""
    return upstream_trust(upstream_ca_file).context


class Resolver:
    """getaddrinfo on the event loop's executor. ``table`` (name → addresses) answers first: for tests that
    build a pool in-process; the proxy never fills it."""

    def __init__(self, table: Mapping[str, list[IPAddress]] | None = None) -> None:
        self.overrides = dict(table or {})

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Every address of ``host`` (order kept, duplicates dropped); raises UpstreamError."""
        literal = literal_address(host)
        if literal is not None:
            return [literal]
        override = self.overrides.get(comparable_host(host))
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
        cordon_context: ssl.SSLContext | None = None,
    ) -> None:
        self.ctx = ctx
        self.cordon_context = cordon_context  # UpstreamTrust.cordon: names a chain that ends at a cordon CA
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
                if tls_host is not None and await self._ends_at_cordon_ca(address, port, tls_host):
                    reason = "its certificate chain ends at a cordon CA, which cordon never trusts upstream"
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

    async def _ends_at_cordon_ca(self, address: IPAddress, port: int, tls_host: str) -> bool:
        """After a failed verification: does the upstream's chain verify against the cordon CAs alone?
        (One more handshake, nothing sent; only to name the refusal.)"""
        if self.cordon_context is None:
            return False
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, writer = await asyncio.open_connection(
                    str(address), port, ssl=self.cordon_context, server_hostname=tls_host,
                    ssl_handshake_timeout=self.connect_timeout,
                )
        except (OSError, TimeoutError):  # ssl.SSLError is an OSError
            return False
        writer.transport.abort()
        return True

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
