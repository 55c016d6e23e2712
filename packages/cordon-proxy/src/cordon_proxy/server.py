"""The asyncio edge: listen on 127.0.0.1, run one :class:`Session` per connection, carry out its commands.

The edge decides nothing about the protocol. The session says what to read next (:attr:`Session.next_read`)
and what to do (commands); :meth:`Connection._perform` is the one dispatcher that carries a command out, at
once when it needs no await (writes, logs, a pooled upstream, a secret the cache has without blocking) and
otherwise through a coroutine; a reply goes straight back into the session. The client task reads the client
and, once a request is all sent, the leased upstream connection too (no task per request); only while a
request body is still coming in (``Read.BODY``) does an upstream task read the upstream concurrently. A
per-connection lock makes each ``handle`` + its commands atomic. A write is followed by ``drain()`` whenever
bytes stay buffered (backpressure both ways); consecutive writes to one peer are joined into one (one TLS
record). Read timeouts use one reusable :class:`Deadline` per connection instead of a timer per read.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Coroutine
from types import CoroutineType
from typing import Any, TypeAlias, cast

from cordon_ca import CAError
from cordon_config.model import Config
from cordon_config.secrets import SecretCache, SecretUnavailable

from cordon_proxy._deadline import Deadline
from cordon_proxy._tasks import spawn
from cordon_proxy.audit import AuditLog
from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.errors import error_response, secret_unavailable
from cordon_proxy.core.session import Session, SettingsRef
from cordon_proxy.core.states import Read
from cordon_proxy.logs import Logger
from cordon_proxy.tls import LeafContexts, sni_of
from cordon_proxy.upstream import Upstream, UpstreamError, UpstreamPool

__all__ = ["DRAIN_SECONDS", "Connection", "Proxy"]

DRAIN_SECONDS = 10.0
HEAD_TIMEOUT = 30.0  # a started request head must complete within min(this, idle_timeout) (slowloris)
SWEEP_EVERY = 10.0
READ_SIZE = 2**18
#: Lingering close (after an early answer to a body still coming in): read and discard for at most this long
#: without data, and this long in all, before closing (nginx's lingering_timeout / lingering_time).
LINGER_IDLE = 2.0
LINGER_TOTAL = 10.0

Later: TypeAlias = "CoroutineType[Any, Any, ev.Event | None]"  # a string: not subscriptable at run time
"""A command still being carried out: awaiting it gives the event to feed back (or None)."""
Performed: TypeAlias = "ev.Event | Later | None"
"""What carrying out a command gives: the event to feed back, a coroutine that gives it, or nothing."""


def _later(coroutine: Coroutine[Any, Any, ev.Event | None]) -> Later:
    """``coroutine`` typed as what an ``async def`` call really returns (so ``type(x) is CoroutineType``
    tells it from an event)."""
    return cast(Later, coroutine)


class Proxy:
    """Shared state of a running proxy: settings, TLS, upstream pool, secret cache, logger, connections.

    Fair share: with proxy tokens on (``verify_token`` set), a connection counts as *unauthenticated* until its
    session reports :class:`~cordon_proxy.core.commands.Authenticated`. Those have a cap of their own
    (``[limits] max_unauthenticated``: at the cap, the oldest is closed for each new one, so a token holder's
    new connection is always read) and must send their first request head within
    ``[limits] first_head_timeout``; ``max_connections`` bounds the authenticated ones.
    """

    def __init__(
        self,
        settings: SettingsRef,
        *,
        leaves: LeafContexts | None,
        pool: UpstreamPool,
        secrets: SecretCache,
        logger: Logger,
        audit: AuditLog | None = None,
    ) -> None:
        self.settings = settings  # swapped as a whole; each session reads it at every request head
        self.leaves = leaves
        self.pool = pool
        self.secrets = secrets
        self.logger = logger
        self.audit = audit  # the audit log of the scope ([audit] enabled), else None
        self.connections: set[Connection] = set()
        self.unauthenticated: dict[Connection, None] = {}  # oldest first (insertion order)
        self.stopping = False
        self.server: asyncio.Server | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, port: int, *, serve: bool = True) -> asyncio.Server:
        """Bind and listen on 127.0.0.1:``port`` (never another address), so the port is held from here on; accept
        connections now, or (``serve=False``) once ``self.server.start_serving()`` is awaited: until then
        connections wait in the backlog. A socket that is bound but not listening could be bound again by any
        other process setting SO_REUSEADDR, which is why the listen happens here."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", port))
            sock.listen(512)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self.server = await asyncio.start_server(self._accept, sock=sock, limit=READ_SIZE, backlog=512,
                                                 start_serving=serve)
        loop = asyncio.get_running_loop()
        self.logger.batch_on(loop)  # request lines: one write per loop iteration
        if self.audit is not None:
            self.audit.batch_on(loop)
        self._sweeper = spawn(self._sweep(), name="cordon-pool-sweeper")
        return self.server

    async def _sweep(self) -> None:
        """Close pooled upstream connections that expired or were closed by the upstream."""
        while not self.stopping:
            await asyncio.sleep(SWEEP_EVERY)
            self.pool.sweep()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        settings = self.settings.current
        limits = settings.limits
        tokens_on = settings.verify_token is not None
        authenticated = len(self.connections) - len(self.unauthenticated)
        if self.stopping or (authenticated if tokens_on else len(self.connections)) >= limits.max_connections:
            with contextlib.suppress(Exception):
                writer.write(error_response("too-many-connections", "too many connections"))
                await writer.drain()
            writer.close()
            return
        conn = Connection(self, reader, writer)
        self.connections.add(conn)
        if tokens_on:
            unauthenticated = self.unauthenticated
            while len(unauthenticated) >= limits.max_unauthenticated:
                oldest = next(iter(unauthenticated))
                del unauthenticated[oldest]
                oldest.abort()  # its own task removes it from ``connections``
            unauthenticated[conn] = None
            conn.first_head_by = asyncio.get_running_loop().time() + limits.first_head_timeout
        try:
            await conn.run()
        finally:
            self.connections.discard(conn)
            self.unauthenticated.pop(conn, None)

    def authenticated(self, conn: Connection) -> None:
        """``conn`` showed a valid token: it leaves the unauthenticated share and its first-head deadline."""
        self.unauthenticated.pop(conn, None)
        conn.first_head_by = None

    def close_ended(self, still_valid: Callable[[str], bool], *, unauthenticated: bool = False) -> int:
        """Abort every connection whose token no longer holds (tunnels and keep-alive alike), and with
        ``unauthenticated`` every one opened without a token; how many."""
        ended = [c for c in self.connections if (c.token_name is None and unauthenticated)
                 or (c.token_name is not None and not still_valid(c.token_name))]
        for conn in ended:
            conn.abort()
        return len(ended)

    async def shutdown(self, grace: float = DRAIN_SECONDS) -> None:
        """Stop accepting, let in-flight requests finish (up to ``grace`` seconds), then close everything."""
        self.stopping = True
        if self.server is not None:
            self.server.close()
        if self._sweeper is not None:
            self._sweeper.cancel()
        for conn in list(self.connections):
            conn.stop_if_idle()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.connections and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            conn.abort()
        self.pool.close_all()
        self.logger.batch_on(None)
        if self.audit is not None:
            self.audit.close()

    def log_request(self, record: cmd.RequestRecord, duration: float) -> None:
        """The request log line, and the audit line when the core decided something about the request."""
        self.logger.request(record, duration)
        if record.decision is not None and self.audit is not None:
            self.audit.request(record, duration)


class Connection:
    """One client connection: its session, the client loop, the upstream loop, the command dispatcher."""

    def __init__(self, proxy: Proxy, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.reader = reader
        self.writer = writer
        self.session = Session(proxy.settings)
        self.lock = asyncio.Lock()
        self.resume = asyncio.Event()  # set after every dispatch: a task waiting for its turn to read looks again
        self.upstream: Upstream | None = None
        self.upstream_task: asyncio.Task[None] | None = None
        self.tunnel: Upstream | None = None
        self.splice: cmd.Splice | None = None
        self.token_name: str | None = None  # the proxy token the session authenticated this connection with
        self.first_head_by: float | None = None  # loop time by which an unauthenticated connection sends a head
        self.started = 0.0
        self.task: asyncio.Task[None] | None = None
        self._busy = False  # inside dispatch (shutdown does not cancel mid-command)
        self._closed = False  # the client transport is closed
        self._reading = False  # the client task awaits a client read (armed on _client_deadline)
        self._client_deadline: Deadline | None = None
        self._upstream_deadline: Deadline | None = None
        self._trace = proxy.logger.enabled("trace")
        self._debug = proxy.logger.enabled("debug")
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    @property
    def _write_timeout(self) -> float:
        """A peer that accepts no byte for this long is gone (no total timeout: only no progress at all)."""
        limits = self.session.settings.limits
        return max(limits.idle_timeout, limits.response_header_timeout)

    # -- loops ------------------------------------------------------------------------------------------
    async def run(self) -> None:
        self.task = asyncio.current_task()
        logger = self.proxy.logger
        if logger.enabled("debug"):
            peer = self.writer.get_extra_info("peername")
            logger.log("debug", "client connection", peer=f"{peer[0]}:{peer[1]}" if peer else None)
        try:
            await self._client_loop()
            if self.splice is not None:
                await self._run_splice(self.splice)
        except asyncio.CancelledError:
            pass
        except Exception as exc:  # a bug: log where, never the message (it could quote a header)
            log_internal_error(self.proxy.logger, exc)
            self._close_client(abort=True)
        finally:
            self._cleanup()

    async def _client_loop(self) -> None:
        """Read what the session asks for, until it is done (closed, spliced or lingering)."""
        session = self.session
        head_deadline: float | None = None
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        deadline = self._client_deadline = Deadline(loop)
        read = self.reader.read
        while True:
            what = session.next_read
            if what is Read.RESPONSE:
                conn = self.upstream
                if self.upstream_task is not None:
                    await self._wait()  # the upstream task reads this response
                elif conn is not None:
                    await self._upstream_read(conn, deadline, task)
                else:
                    raise RuntimeError("the session awaits a response but no upstream connection is leased")
                continue
            if what is Read.REPLY:
                await self._wait()  # another task is carrying out the command
                continue
            if what is Read.DISCARD:
                if not self._closed:
                    await self._linger_then_close()
                return
            if what is Read.DONE:
                return
            if what is Read.BODY:
                if self.upstream is not None and self.upstream_task is None:
                    # a request body is still coming in: read the upstream concurrently (an early response)
                    self.upstream_task = spawn(self._upstream_loop(self.upstream), name="cordon-upstream")
            elif self.proxy.stopping:
                return  # between requests at shutdown
            # Reads happen only between requests or while a request body comes in: either way a client that
            # sends nothing for idle_timeout is gone. A started head must also complete within the head limit.
            idle_timeout = session.settings.limits.idle_timeout
            if what is Read.HEAD:
                now = loop.time()
                if head_deadline is None:
                    head_deadline = now + min(HEAD_TIMEOUT, idle_timeout)
                timeout = max(0.0, head_deadline - now)
            else:
                head_deadline = None
                timeout = idle_timeout
            if self.first_head_by is not None:  # no valid token shown yet: the short deadline of its own
                timeout = min(timeout, max(0.0, self.first_head_by - loop.time()))
            deadline.arm(timeout, task)
            self._reading = True
            try:
                data = await read(READ_SIZE)
            except asyncio.CancelledError:
                if not deadline.expired(task):
                    raise
                if session.next_read is Read.DISCARD:  # lingering already, and the client paused LINGER_IDLE
                    self._close_client(abort=False)
                    return
                self.proxy.logger.log("debug", "client connection timed out", head=head_deadline is not None)
                data = b""
            except (ConnectionError, ssl.SSLError, OSError):
                data = b""
            finally:
                self._reading = False
                deadline.disarm(task)
            await self.dispatch(ev.ClientData(data) if data else ev.ClientClosed())

    async def _wait(self) -> None:
        """Wait until another task's dispatch changes what the session reads next."""
        self.resume.clear()
        await self.resume.wait()

    async def _read_upstream_event(self, conn: Upstream, deadline: Deadline, task: asyncio.Task[Any]) -> ev.Event:
        """One read of the upstream connection within the response timeout, as the core's event."""
        timeout = self.session.settings.limits.response_header_timeout
        deadline.arm(timeout, task)
        try:
            data = await conn.reader.read(READ_SIZE)
        except asyncio.CancelledError:
            if not deadline.expired(task):
                raise
            return ev.UpstreamTimeout(timeout)
        except (ConnectionError, ssl.SSLError, OSError):
            return ev.UpstreamClosed()
        finally:
            deadline.disarm(task)
        return ev.UpstreamData(data) if data else ev.UpstreamClosed()

    async def _upstream_read(self, conn: Upstream, deadline: Deadline, task: asyncio.Task[Any]) -> None:
        """One read of the leased upstream connection by the client task, and its dispatch."""
        event = await self._read_upstream_event(conn, deadline, task)
        if self.upstream is not conn or self.upstream_task is not None:
            return
        await self.dispatch(event)
        ended = type(event) is not ev.UpstreamData  # UpstreamClosed or UpstreamTimeout
        if ended and self.upstream is conn and self.upstream_task is None:
            self._drop_upstream(reusable=False)

    async def _upstream_loop(self, conn: Upstream) -> None:
        try:
            await self._upstream_reads(conn)
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            log_internal_error(self.proxy.logger, exc)
            self._close_client(abort=True)
            if self.task is not None:
                self.task.cancel()

    async def _upstream_reads(self, conn: Upstream) -> None:
        # One loop per lease: the same connection can be released and leased again by a pipelined request
        # inside this very dispatch, and then a new loop owns it (two readers on one stream would split data).
        me = asyncio.current_task()
        assert me is not None
        deadline = self._upstream_deadline
        if deadline is None:
            deadline = self._upstream_deadline = Deadline(asyncio.get_running_loop())
        while self.upstream_task is me:
            event = await self._read_upstream_event(conn, deadline, me)
            if self.upstream_task is not me:
                return
            await self.dispatch(event)
            if isinstance(event, ev.UpstreamClosed | ev.UpstreamTimeout):
                if self.upstream_task is me:
                    self._drop_upstream(reusable=False)
                return

    async def dispatch(self, event: ev.Event) -> None:
        """Feed one event to the session and carry out the commands (and the events they produce)."""
        if self._trace:
            self.proxy.logger.log("trace", "event", kind=type(event).__name__)
        session = self.session
        lock = self.lock
        await lock.acquire()  # what ``async with`` does, minus two coroutine objects per event
        try:
            self._busy = True
            pending = deque(session.handle(event))
            while pending:
                follow = self._perform(pending.popleft(), pending)
                if type(follow) is CoroutineType:
                    follow = await follow
                if follow is not None:
                    pending.extend(session.handle(follow))
        finally:
            self._busy = False
            lock.release()
        self.resume.set()

    # -- commands -----------------------------------------------------------------------------------------
    def _perform(self, command: cmd.Command, pending: deque[cmd.Command]) -> Performed:
        """Carry out ``command``: at once when it needs no await, else return the coroutine that does it.

        What comes back is the reply (or follow-up event) for the session, a coroutine giving it, or None.
        Consecutive writes to one peer still in ``pending`` are joined into one.
        """
        if type(command) is cmd.SendClient:
            data = command.data
            while pending:
                queued = pending[0]
                if type(queued) is not cmd.SendClient:
                    break
                data += queued.data
                pending.popleft()
            if self._closed:
                return None
            writer = self.writer
            try:
                writer.write(data)
            except (ConnectionError, ssl.SSLError, OSError):
                return ev.ClientClosed()
            return _later(self._drain_client()) if _must_drain(writer.transport) else None
        if type(command) is cmd.SendUpstream:
            data = command.data
            while pending:
                queued = pending[0]
                if type(queued) is not cmd.SendUpstream:
                    break
                data += queued.data
                pending.popleft()
            conn = self.upstream
            if conn is None or conn.write_failed:
                return None
            try:
                conn.writer.write(data)
            except (ConnectionError, ssl.SSLError, OSError):
                conn.write_failed = True  # see _drain_upstream
                return None
            return _later(self._drain_upstream()) if _must_drain(conn.writer.transport) else None
        if type(command) is cmd.RequestStarted:
            self.started = time.perf_counter()
            return None
        if type(command) is cmd.LogRequest:
            duration = time.perf_counter() - self.started if self.started else 0.0
            self.proxy.log_request(command.record, duration)
            return None
        if type(command) is cmd.FetchSecret:
            return self._fetch_secret(command)
        if type(command) is cmd.OpenUpstream:
            if command.tls_host is not None and not command.fresh:
                conn = self.proxy.pool.checkout(command.host, command.port, command.tls_host)
                if conn is not None:
                    return self._leased(conn, command)
            return _later(self._open_upstream(command))
        if type(command) is cmd.ReleaseUpstream:
            self._drop_upstream(command.reusable)
            return None
        if type(command) is cmd.InvalidateSecret:
            self.proxy.secrets.invalidate(command.route_name)
            return None
        if type(command) is cmd.MitmStarted:
            self.proxy.logger.log("info", "MITM: injecting credentials", route=command.route, host=command.host)
            return None
        if type(command) is cmd.Authenticated:
            self.token_name = command.token_name
            if self.first_head_by is not None:
                self.proxy.authenticated(self)
            return None
        if type(command) is cmd.StartClientTLS:
            return _later(self._start_tls(command))
        if type(command) is cmd.Resolve:
            return _later(self._resolve(command))
        if type(command) is cmd.OpenTunnel:
            return _later(self._open_tunnel(command))
        if type(command) is cmd.Splice:
            if command.upstream:
                self.tunnel, self.upstream, self.upstream_task = self.upstream, None, None
            self.splice = command
            return None
        if type(command) is cmd.CloseClient:
            if command.linger and not command.abort and not self._closed:
                self._start_linger()
            else:
                self._close_client(abort=command.abort)
            return None
        raise RuntimeError(f"unknown command {type(command).__name__}")

    async def _drain_client(self) -> ev.Event | None:
        try:
            async with asyncio.timeout(self._write_timeout):  # a client that stops reading is dropped
                await self.writer.drain()
        except (ConnectionError, ssl.SSLError, OSError, TimeoutError):
            return ev.ClientClosed()
        return None

    async def _drain_upstream(self) -> ev.Event | None:
        conn = self.upstream
        if conn is None or conn.write_failed:
            return None
        try:
            async with asyncio.timeout(self._write_timeout):
                await conn.writer.drain()
        except TimeoutError:
            return ev.UpstreamTimeout(self._write_timeout)
        except (ConnectionError, ssl.SSLError, OSError):
            # The upstream stopped reading (e.g. an early 413 and close): drop the rest of the body and let
            # the upstream loop deliver whatever response it sent, or the EOF that ends in a 502.
            conn.write_failed = True
        return None

    def _fetch_secret(self, command: cmd.FetchSecret) -> Performed:
        """The secret at once when the cache has it without blocking, else a thread fetches it."""
        route = command.route
        config = self.session.settings.config
        assert config is not None
        try:
            secret = self.proxy.secrets.get_nowait(route, config)
        except Exception as exc:
            return _secret_failed(command, exc)
        if secret is None:
            return _later(self._fetch_secret_in_thread(command, config))
        return ev.SecretReady(command, secret)

    async def _fetch_secret_in_thread(self, command: cmd.FetchSecret, config: Config) -> ev.Event:
        try:
            secret = await asyncio.to_thread(self.proxy.secrets.get, command.route, config)
        except Exception as exc:
            return _secret_failed(command, exc)
        return ev.SecretReady(command, secret)

    async def _resolve(self, command: cmd.Resolve) -> ev.Event:
        try:
            addresses = await self.proxy.pool.resolve(command.host, command.port)
        except UpstreamError as exc:
            return ev.ResolveFailed(command, exc.message)
        return ev.Resolved(command, addresses)

    async def _open_tunnel(self, command: cmd.OpenTunnel) -> ev.Event:
        try:
            self.tunnel = await self.proxy.pool.connect_plain(command.host, command.port, command.addresses)
        except UpstreamError as exc:
            return ev.UpstreamFailed(command, exc.code, exc.message)
        return ev.TunnelConnected(command)

    async def _open_upstream(self, command: cmd.OpenUpstream) -> ev.Event:
        pool = self.proxy.pool
        try:
            if command.tls_host is not None:
                conn = await pool.connect_tls(command.host, command.port, command.tls_host, fresh=command.fresh)
            else:
                conn = await pool.connect_plain(command.host, command.port, command.addresses)
        except UpstreamError as exc:
            return ev.UpstreamFailed(command, exc.code, exc.message)
        return self._leased(conn, command)

    def _leased(self, conn: Upstream, command: cmd.OpenUpstream) -> ev.Event:
        self.upstream = conn  # read by the client task, or by an upstream task while a request body comes in
        self.upstream_task = None
        logger = self.proxy.logger
        if self._debug:
            logger.log("debug", "upstream connection", host=command.host, port=command.port,
                       tls=command.tls_host is not None, reused=conn.reused)
        return ev.UpstreamConnected(command, conn.reused)

    def _drop_upstream(self, reusable: bool) -> None:
        conn, task = self.upstream, self.upstream_task
        self.upstream = None
        self.upstream_task = None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            reusable = False  # a cancelled read may have consumed bytes: do not pool
        if conn is not None:
            self.proxy.pool.release(conn, reusable)

    async def _start_tls(self, command: cmd.StartClientTLS) -> ev.Event:
        host = command.host
        leaves = self.proxy.leaves
        if leaves is None:
            return ev.ClientClosed()
        try:
            ctx = leaves.get(host)
        except CAError as exc:  # e.g. the CA's name constraints do not cover this route's host
            self.proxy.logger.log("warn", f"no certificate for {host}: {exc}")
            return ev.ClientClosed()
        try:
            await self.writer.drain()
            await self.writer.start_tls(ctx, ssl_handshake_timeout=self.session.settings.limits.connect_timeout)
        except Exception as exc:  # handshake refused (SNI mismatch, untrusted CA, reset): close quietly
            self.proxy.logger.log("debug", "client TLS handshake failed", host=host, error=type(exc).__name__,
                                  reason=getattr(exc, "reason", None))
            return ev.ClientClosed()
        self.proxy.logger.log("debug", "client TLS established", host=host)
        return ev.ClientTLSReady(command, sni_of(self.writer.get_extra_info("ssl_object")))

    # -- splice (unrouted CONNECT) ----------------------------------------------------------------------------
    async def _run_splice(self, splice: cmd.Splice) -> None:
        tunnel = self.tunnel
        if tunnel is None:
            return
        counts = [0, 0]
        if splice.leftover:
            tunnel.writer.write(splice.leftover)
            counts[0] += len(splice.leftover)
        if splice.to_client:
            self.writer.write(splice.to_client)
            counts[1] += len(splice.to_client)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, index: int) -> None:
            try:
                while True:
                    data = await src.read(READ_SIZE)
                    if not data:
                        break
                    dst.write(data)
                    counts[index] += len(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                with contextlib.suppress(Exception):
                    if dst.can_write_eof():
                        dst.write_eof()  # half-close: the other direction keeps flowing
                    else:
                        dst.close()  # TLS cannot half-close: end both directions

        await asyncio.gather(
            pump(self.reader, tunnel.writer, 0), pump(tunnel.reader, self.writer, 1), return_exceptions=True
        )
        splice.record.bytes = counts[1]
        splice.record.bytes_up += counts[0]
        duration = time.perf_counter() - self.started if self.started else 0.0
        self.proxy.log_request(splice.record, duration)

    # -- teardown ---------------------------------------------------------------------------------------------
    def _start_linger(self) -> None:
        """The session is done but the client is still sending: the client task lingers (``Read.DISCARD``),
        then closes."""
        deadline, task = self._client_deadline, self.task
        if self._reading and deadline is not None and task is not None and task is not asyncio.current_task():
            deadline.arm(LINGER_IDLE, task)  # a client that paused mid-body need not be awaited for idle_timeout
        self.resume.set()

    async def _linger_then_close(self) -> None:
        """Read and discard what the client still sends until it closes, pauses LINGER_IDLE s or LINGER_TOTAL s
        pass, then close. The answer (``Connection: close``) is already written: a client reads it and closes;
        closing first, with its upload unread, would reset the connection under the answer."""
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        writer = self.writer
        if writer.can_write_eof():  # plain HTTP: a FIN tells the client the answer is complete
            with contextlib.suppress(Exception):
                writer.write_eof()
        deadline = self._client_deadline or Deadline(loop)
        self._client_deadline = deadline
        end = loop.time() + LINGER_TOTAL
        discarded = 0
        read = self.reader.read
        while (remaining := end - loop.time()) > 0 and not self.proxy.stopping:
            deadline.arm(min(LINGER_IDLE, remaining), task)
            try:
                data = await read(READ_SIZE)
            except asyncio.CancelledError:
                if not deadline.expired(task):
                    raise
                break
            except (ConnectionError, ssl.SSLError, OSError):
                break
            finally:
                deadline.disarm(task)
            if not data:
                break
            discarded += len(data)
        if self._debug:
            self.proxy.logger.log("debug", "lingering close", discarded=discarded)
        self._close_client(abort=False)

    def _close_client(self, *, abort: bool) -> None:
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            if abort:
                self.writer.transport.abort()
            else:
                self.writer.close()
        self.resume.set()

    def _cleanup(self) -> None:
        for deadline in (self._client_deadline, self._upstream_deadline):
            if deadline is not None:
                deadline.close()
        if self.upstream is not None:
            self._drop_upstream(reusable=False)
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        if not self._closed:
            self._close_client(abort=False)

    def stop_if_idle(self) -> None:
        """At shutdown: end this connection now when it is between requests (or only lingering: its answer
        has gone out)."""
        idle = self.session.next_read in (Read.REQUEST, Read.HEAD, Read.DISCARD)
        if idle and not self._busy and self.task is not None:
            self.task.cancel()

    def abort(self) -> None:
        """At the end of the drain period: end this connection whatever it is doing."""
        if self.task is not None:
            self.task.cancel()
        self._close_client(abort=True)


def _must_drain(transport: asyncio.WriteTransport) -> bool:
    """Whether a write must be followed by ``drain()``: bytes are still buffered or the transport is closing.

    A write that the transport handed on completely (the common case on a warm connection) leaves nothing to
    wait for, so the drain and its timer are skipped; backpressure applies as soon as anything stays buffered.
    """
    return transport.is_closing() or transport.get_write_buffer_size() > 0


def log_internal_error(logger: Logger, exc: BaseException) -> None:
    """Log an unexpected exception by type and innermost location only (messages may quote secrets)."""
    tb = exc.__traceback__
    where = "?"
    while tb is not None:
        where = f"{os.path.basename(tb.tb_frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    logger.log("error", "internal error", type=type(exc).__name__, at=where)


def loop_exception_handler(logger: Logger) -> Callable[[asyncio.AbstractEventLoop, dict[str, object]], None]:
    """An event-loop exception handler that logs without the default handler's reprs and tracebacks."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        exc = context.get("exception")
        if isinstance(exc, BaseException):
            log_internal_error(logger, exc)
        else:
            logger.log("error", "event loop error", detail=str(context.get("message", ""))[:200])

    return handler


def _secret_failed(command: cmd.FetchSecret, exc: Exception) -> ev.SecretFailed:
    """The reply for a secret that could not be had (an unexpected exception is named by type only: its
    message could hold the value)."""
    reason = exc.reason if isinstance(exc, SecretUnavailable) else type(exc).__name__
    return ev.SecretFailed(command, secret_unavailable(command.route.name, reason))
