"""The asyncio edge of a listener: accept on 127.0.0.1, run each connection's :class:`Session`, then relay.

This is the only module of cordon-pg that touches sockets. Per connection:

* the handshake: bytes from both legs become events in one queue; a task feeds them to the session and performs
  its commands in order (TLS upgrades inline, so no byte is read between "S" and the handshake; the upstream
  connection and the secret fetch as tasks that post their outcome back);
* the relay: the two protocols write each other's bytes directly, without parsing, and stop reading a side while
  the other side's write buffer is full (pause/resume_writing), so a COPY of any size costs constant memory.

Cancel requests go to the server that holds the session, at the address it was connected to (DNS is pinned),
over a new connection verified exactly like the session's.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from cordon_config import Config, Listener
from cordon_proxy._tasks import spawn
from cordon_proxy.logs import Logger
from cordon_proxy.upstream import Resolver, UpstreamError

from cordon_pg import events as ev
from cordon_pg import protocol as pq
from cordon_pg.session import Session, Settings, TokenCheck
from cordon_pg.tls import ClientTLS, binding_of

__all__ = ["CancelRegistry", "ListenerServer", "Shared"]

HANDSHAKE_TIMEOUT = 60.0  # the server's own authentication_timeout default
TOKEN_RECHECK = 2.0  # seconds between checks that a relayed session's proxy token is still valid


@dataclass(eq=False)
class Shared:
    """What every listener of one proxy shares."""

    config: Config
    logger: Logger
    secrets: Any  # cordon_config.secrets.SecretCache
    upstream_ctx: ssl.SSLContext
    client_tls: ClientTLS | None
    tokens: TokenCheck | None
    resolver: Resolver = field(default_factory=Resolver)
    cancels: CancelRegistry = field(default_factory=lambda: CancelRegistry())


@dataclass(frozen=True, slots=True)
class _CancelTarget:
    listener: Listener
    address: str
    pid: int
    key: bytes = field(repr=False)


class CancelRegistry:
    """(listener, pid, the key cordon gave the client) → where and how to send the real cancel request."""

    def __init__(self) -> None:
        self._targets: dict[tuple[str, int, bytes], _CancelTarget] = {}

    def add(self, client_key: tuple[str, int, bytes], target: _CancelTarget) -> None:
        self._targets[client_key] = target

    def remove(self, client_key: tuple[str, int, bytes]) -> None:
        self._targets.pop(client_key, None)

    def find(self, client_key: tuple[str, int, bytes]) -> _CancelTarget | None:
        return self._targets.get(client_key)

    def __len__(self) -> int:
        return len(self._targets)


class _Leg(asyncio.Protocol):
    """One side of a connection. During the handshake its bytes go to the connection's queue; in the relay
    straight to ``peer``."""

    def __init__(self, conn: _Connection, side: str) -> None:
        self.conn = conn
        self.side = side
        self.transport: Any = None
        self.peer: _Leg | None = None
        self.forward: Any = None  # the peer transport's write, once the relay runs (the hot path: one lookup)
        self.received = 0
        self.write_paused = False
        self.closed = False
        self.tls_starting = False  # start_tls in progress: the first bytes that arrive follow the handshake

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.side == "client":
            self.conn.client_connected()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        forward = self.forward
        if forward is not None:
            forward(data)
            return
        if self.tls_starting:  # decrypted bytes can reach us before start_tls() has returned to its caller
            self.tls_done()
        self.conn.queue.put_nowait(ev.ClientData(data) if self.side == "client" else ev.UpstreamData(data))

    def tls_done(self) -> None:
        """Tell the session the client's TLS handshake is over, once, before any byte that came through it."""
        if self.tls_starting:
            self.tls_starting = False
            self.conn.queue.put_nowait(ev.ClientTLSReady())

    def eof_received(self) -> bool:
        return False  # PostgreSQL does not half-close: the transport closes, connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.conn.lost(self.side)

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.peer is not None and not self.peer.closed:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.peer is not None and not self.peer.closed:
            self.peer.transport.resume_reading()


class _Connection:
    """One client connection: its session, both legs, the handshake task, then the relay."""

    def __init__(self, server: ListenerServer) -> None:
        self.server = server
        self.shared = server.shared
        self.listener = server.listener
        self.session = Session(server.settings)
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.client = _Leg(self, "client")
        self.upstream: _Leg | None = None
        self.address: str | None = None
        self.state = "handshake"
        self.started = time.monotonic()
        self.tasks: list[asyncio.Task[Any]] = []
        self.cancel_key: tuple[str, int, bytes] | None = None
        self.token: str | None = None
        self.token_value: str | None = None
        self.reason = ""
        self._recheck: asyncio.TimerHandle | None = None

    # -- lifecycle -----------------------------------------------------------------------------------------
    def client_connected(self) -> None:
        self.server.connections.add(self)
        if len(self.server.connections) > self.server.max_connections:
            fields = {"S": "FATAL", "V": "FATAL", "C": "53300",
                      "M": f'cordon: listener "{self.listener.name}": too many connections '
                           f"({self.server.max_connections})"}
            self.client.transport.write(pq.error_response(fields))
            self.shared.logger.log("warn", "pg: connection refused: too many connections",
                                   listener=self.listener.name)
            self.close("too many connections")
            return
        self.tasks.append(spawn(self._handshake(), name=f"pg-handshake-{self.listener.name}"))

    def lost(self, side: str) -> None:
        if self.state == "handshake":
            self.queue.put_nowait(ev.ClientClosed() if side == "client" else ev.UpstreamClosed())
        else:
            self.close(f"{side} closed")

    def close(self, reason: str) -> None:
        if self.state == "closed":
            return
        relayed = self.state == "relay"
        self.state = "closed"
        self.reason = reason
        for task in self.tasks:
            if task is not asyncio.current_task():
                task.cancel()
        if self._recheck is not None:
            self._recheck.cancel()
        if self.cancel_key is not None:
            self.shared.cancels.remove(self.cancel_key)
        for leg in (self.client, self.upstream):
            if leg is not None and leg.transport is not None:
                leg.transport.close()  # writes what is buffered, then closes
        self.server.connections.discard(self)
        if relayed:
            upstream = self.upstream
            self.shared.logger.log(
                "info", "pg: session ended", listener=self.listener.name, user=self.listener.auth.username,
                database=self.database, token=self.token, reason=reason,
                duration_ms=round((time.monotonic() - self.started) * 1000, 1),
                bytes_in=self.client.received, bytes_out=upstream.received if upstream else 0,
            )

    @property
    def database(self) -> str | None:
        startup = self.session.startup
        if startup is None:
            return None
        return startup.get("database") or startup.get("user")

    # -- handshake -----------------------------------------------------------------------------------------
    async def _handshake(self) -> None:
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                while self.state == "handshake":
                    event = await self.queue.get()
                    for command in self.session.handle(event):
                        await self._perform(command)
                        if self.state != "handshake":
                            break
        except TimeoutError:
            self._refuse_late("08006", f"the session was not set up within {HANDSHAKE_TIMEOUT:g} s")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug must cost one connection, never the listener
            self.shared.logger.log("error", f"pg: handshake failed: {type(exc).__name__}: {exc}",
                                   listener=self.listener.name)
            self.close("internal error")

    def _refuse_late(self, code: str, message: str) -> None:
        fields = {"S": "FATAL", "V": "FATAL", "C": code, "M": f'cordon: listener "{self.listener.name}": {message}'}
        if self.client.transport is not None and not self.client.closed:
            self.client.transport.write(pq.error_response(fields))
        self.shared.logger.log("warn", f"pg: {message}", listener=self.listener.name)
        self.close(message)

    async def _perform(self, command: object) -> None:
        if isinstance(command, ev.SendClient):
            self.client.transport.write(command.data)
        elif isinstance(command, ev.SendUpstream):
            assert self.upstream is not None
            self.upstream.transport.write(command.data)
        elif isinstance(command, ev.StartClientTLS):
            await self._client_tls()
        elif isinstance(command, ev.FetchSecret):
            self._fetch_secret()
        elif isinstance(command, ev.ConnectUpstream):
            self.tasks.append(spawn(self._connect(), name=f"pg-connect-{self.listener.name}"))
        elif isinstance(command, ev.StartUpstreamTLS):
            await self._upstream_tls()
        elif isinstance(command, ev.InvalidateSecret):
            self.shared.secrets.invalidate(self.listener.name)
        elif isinstance(command, ev.ForwardCancel):
            spawn(self.server.forward_cancel(command.pid, command.key), name="pg-cancel")
        elif isinstance(command, ev.StartRelay):
            self._start_relay(command)
        elif isinstance(command, ev.Close):
            self.close(command.reason)
        elif isinstance(command, ev.Log):
            self.shared.logger.log(command.level, f"pg: {command.message}", listener=self.listener.name,
                                   **{k: v for k, v in command.fields.items() if v is not None})
        else:
            raise RuntimeError(f"unknown command {command!r}")

    async def _client_tls(self) -> None:
        assert self.shared.client_tls is not None
        loop = asyncio.get_running_loop()
        self.client.tls_starting = True
        try:
            transport = await loop.start_tls(self.client.transport, self.client, self.shared.client_tls.context(),
                                             server_side=True, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
        except (OSError, ssl.SSLError, ConnectionError) as exc:
            self.client.tls_starting = False
            self.queue.put_nowait(ev.Failed("client-tls", _one_line(exc)))
            return
        if transport is None:
            self.client.tls_starting = False
            self.queue.put_nowait(ev.Failed("client-tls", "the client closed the connection"))
            return
        self.client.transport = transport
        self.client.tls_done()

    def _fetch_secret(self) -> None:
        from cordon_config.secrets import SecretUnavailable

        try:  # a fresh cache hit, or an env/file source: no thread needed
            now = self.shared.secrets.get_nowait(self.listener, self.shared.config)
        except SecretUnavailable as exc:
            self.queue.put_nowait(ev.Failed("secret", exc.reason, exc.hint))
            return
        if now is not None:
            self.queue.put_nowait(ev.SecretReady(now))
            return
        self.tasks.append(spawn(self._fetch_secret_blocking(), name=f"pg-secret-{self.listener.name}"))

    async def _fetch_secret_blocking(self) -> None:
        from cordon_config.secrets import SecretUnavailable

        loop = asyncio.get_running_loop()
        try:
            secret = await loop.run_in_executor(None, self.shared.secrets.get, self.listener, self.shared.config)
        except SecretUnavailable as exc:
            self.queue.put_nowait(ev.Failed("secret", exc.reason, exc.hint))
            return
        self.queue.put_nowait(ev.SecretReady(secret))

    async def _connect(self) -> None:
        listener = self.listener
        loop = asyncio.get_running_loop()
        timeout = self.shared.config.limits.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                addresses = await self.shared.resolver.resolve(listener.upstream_host, listener.upstream_port)
        except UpstreamError as exc:
            self.queue.put_nowait(ev.Failed("upstream-connect", exc.message.replace("upstream ", "", 1),
                                            "check upstream in cordon.toml and your DNS"))
            return
        except TimeoutError:
            self.queue.put_nowait(ev.Failed("upstream-connect", f"resolving took over {timeout:g} s"))
            return
        reasons: list[str] = []
        for address in addresses:
            try:
                async with asyncio.timeout(timeout):
                    _, leg = await loop.create_connection(lambda: _Leg(self, "upstream"), str(address),
                                                          listener.upstream_port)
            except TimeoutError:
                reasons.append(f"{address}: timed out after {timeout:g} s")
                continue
            except OSError as exc:
                reasons.append(f"{address}: {exc.strerror or type(exc).__name__}")
                continue
            if self.state != "handshake":
                leg.transport.close()
                return
            self.upstream, self.address = leg, str(address)
            self.queue.put_nowait(ev.UpstreamConnected())
            return
        self.queue.put_nowait(ev.Failed("upstream-connect", "; ".join(reasons) or "no address",
                                        "is the server running and reachable from this machine?"))

    async def _upstream_tls(self) -> None:
        assert self.upstream is not None
        loop = asyncio.get_running_loop()
        host = self.listener.upstream_host
        try:
            transport = await loop.start_tls(self.upstream.transport, self.upstream, self.shared.upstream_ctx,
                                             server_hostname=host,
                                             ssl_handshake_timeout=self.shared.config.limits.connect_timeout)
        except ssl.SSLCertVerificationError as exc:
            reason = exc.verify_message or exc.reason or "certificate verify failed"
            self.queue.put_nowait(ev.Failed("upstream-tls", f"certificate verify failed: {reason}",
                                            f"the server's certificate must be valid for {host} and issued by a CA "
                                            "in the system store or [tls] upstream_ca_file"))
            return
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError) as exc:
            self.queue.put_nowait(ev.Failed("upstream-tls", f"TLS handshake failed: {_one_line(exc)}"))
            return
        if transport is None:
            self.queue.put_nowait(ev.Failed("upstream-tls", "the server closed the connection"))
            return
        self.upstream.transport = transport
        self.queue.put_nowait(ev.UpstreamTLSReady(binding_of(transport.get_extra_info("ssl_object"))))

    # -- relay ---------------------------------------------------------------------------------------------
    def _start_relay(self, command: ev.StartRelay) -> None:
        upstream = self.upstream
        assert upstream is not None
        self.state = "relay"
        self.token = command.token
        self.token_value = self.session.token_value
        if command.to_upstream:
            upstream.transport.write(command.to_upstream)
        if command.to_client:
            self.client.transport.write(command.to_client)
        while not self.queue.empty():  # bytes queued before the switch go first, in order
            event = self.queue.get_nowait()
            if isinstance(event, ev.ClientData):
                upstream.transport.write(event.data)
            elif isinstance(event, ev.UpstreamData):
                self.client.transport.write(event.data)
            elif isinstance(event, ev.ClientClosed | ev.UpstreamClosed):
                self.close("closed as the session started")
                return
        self.client.peer, upstream.peer = upstream, self.client
        self.client.forward, upstream.forward = upstream.transport.write, self.client.transport.write
        if self.client.write_paused:
            upstream.transport.pause_reading()
        if upstream.write_paused:
            self.client.transport.pause_reading()
        if command.backend is not None and command.client_key is not None and self.address is not None:
            pid, key = command.backend
            self.cancel_key = (self.listener.name, pid, command.client_key)
            self.shared.cancels.add(self.cancel_key, _CancelTarget(self.listener, self.address, pid, key))
        if self.token is not None:
            self._schedule_recheck()
        self.shared.logger.log(
            "info", "pg: session started", listener=self.listener.name, user=self.listener.auth.username,
            database=self.database, upstream=self.listener.upstream, address=self.address, token=self.token,
            client_tls=self.session.client_tls,
            setup_ms=round((time.monotonic() - self.started) * 1000, 1),
        )

    def _schedule_recheck(self) -> None:
        loop = asyncio.get_running_loop()
        self._recheck = loop.call_later(TOKEN_RECHECK, self._check_token)

    def _check_token(self) -> None:
        if self.state != "relay" or self.shared.tokens is None or self.token_value is None:
            return
        if self.shared.tokens.verify(self.token_value) != self.token:
            self.shared.logger.log("warn", "pg: proxy token revoked or rotated: closing its session",
                                   listener=self.listener.name, token=self.token)
            self.close("proxy token no longer valid")
            return
        self._schedule_recheck()


class ListenerServer:
    """One ``[[listeners]]`` entry bound to 127.0.0.1:port."""

    def __init__(self, listener: Listener, shared: Shared) -> None:
        self.listener = listener
        self.shared = shared
        self.settings = Settings(
            listener=listener.name,
            username=listener.auth.username,
            upstream=listener.upstream,
            client_tls=listener.client_tls if shared.client_tls is not None else "disable",
            upstream_tls=listener.upstream_tls,
            allow_cleartext=listener.upstream_tls == "verify-full" or _is_loopback(listener.upstream_host),
            tokens=shared.tokens,
        )
        self.max_connections = shared.config.limits.max_connections
        self.connections: set[_Connection] = set()
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        """Bind 127.0.0.1:port (raises OSError)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self).client, "127.0.0.1", self.listener.port,
                                                reuse_address=True, backlog=512)

    async def close(self) -> None:
        """Stop accepting and close every connection (a relayed session has no request to finish)."""
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            conn.close("cordon is stopping")
        await asyncio.sleep(0)

    async def forward_cancel(self, pid: int, key: bytes) -> None:
        """Send a client's CancelRequest on to the server holding that session, verified like the session."""
        target = self.shared.cancels.find((self.listener.name, pid, key))
        logger = self.shared.logger
        if target is None:
            logger.log("info", "pg: cancel request for no session of ours (ignored)", listener=self.listener.name)
            return
        listener = target.listener
        timeout = self.shared.config.limits.connect_timeout
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(target.address, listener.upstream_port)
                try:
                    if listener.upstream_tls == "verify-full":
                        writer.write(pq.ssl_request())
                        if await reader.readexactly(1) != b"S":
                            raise ConnectionError("the server declined TLS")
                        await writer.start_tls(self.shared.upstream_ctx, server_hostname=listener.upstream_host)
                    writer.write(pq.cancel_request(target.pid, target.key))
                    await writer.drain()
                    await reader.read(1)  # the server closes once it has the request
                finally:
                    writer.close()
                    with contextlib.suppress(Exception):
                        await writer.wait_closed()
        except (OSError, ssl.SSLError, ConnectionError, TimeoutError, asyncio.IncompleteReadError) as exc:
            logger.log("warn", f"pg: cancel request could not be forwarded: {_one_line(exc)}",
                       listener=listener.name)
            return
        logger.log("info", "pg: cancel request forwarded", listener=listener.name, pid=target.pid)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:200]

