"""The per-connection state machine: ``Session.handle(event) -> list[Command]`` (sans-IO).

Theory of operation. Each connection is in one :class:`~cordon_proxy.core.states.State`; :data:`TRANSITIONS`
lists, per state, the events it expects and the handler that runs. Any other event raises
:class:`~cordon_proxy.core.states.ProtocolError` (``ClientClosed`` is expected everywhere; ``CLOSED`` ignores
everything, since I/O already in flight may still report). Five commands (:data:`~cordon_proxy.core.commands.
Awaited`) are answered by a reply that names them; the state that sent one waits for exactly that reply.
:attr:`Session.next_read` tells the edge what to read next.

A connection starts on cordon's plain listener (``IDLE``, no tunnel):

* ``CONNECT host:port`` to a routed host → token check → ``200`` → ``HANDSHAKE`` (:class:`StartClientTLS`) →
  ``IDLE`` inside the MITM tunnel, where every request must name the CONNECT host (Host header,
  absolute-form authority, and the TLS SNI of :class:`ClientTLSReady`), else 421 and nothing is forwarded.
* ``CONNECT`` to any other host → SSRF check of every resolved address (``RESOLVE``) → ``OPEN_TUNNEL`` →
  ``200`` → ``SPLICED`` (the edge relays bytes).
* origin-form: only ``GET /health`` with ``Host: 127.0.0.1:<port>`` or ``localhost:<port>``; else 400. The
  answer is ``Settings.health(query)`` (the identity proof, ``cordon_config.identity``) and the connection is
  closed after it.
* With proxy tokens on, every CONNECT and every absolute-form request needs a valid ``Proxy-Authorization``
  (routed or not); a connection whose token has since ended (``Settings.token_valid``) is refused at its next
  request head.
* absolute-form ``http://``: unrouted → SSRF-checked (``RESOLVE``) and forwarded; routed → 403 unless the
  route sets ``allow_plain_http``.

A routed request, once its head is accepted, is *admitted* (:meth:`Session._admit`, the policy step before any
secret is fetched) → ``SECRET`` (:class:`FetchSecret`) → ``OPEN_UPSTREAM`` (TLS verified for the route host) →
``FORWARD``: the :class:`~cordon_proxy.core.exchange.Exchange` sends the re-serialised head with the injected
header, streams the body and relays the response → ``IDLE``. One request is in flight per connection;
pipelined requests wait in ``_pending``. A WebSocket upgrade inside a MITM tunnel is injected like any request
and, after the upstream's ``101``, handed to the edge as a :class:`Splice` of both connections; a bodyless
GET/HEAD/OPTIONS that meets a pooled connection the upstream had already closed (no response byte) is resent
once on a fresh connection.

Settings are read from one :class:`SettingsRef` at each request head: a swap applies to the next request of
every connection, never to one already in flight.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from cordon_config.hosts import comparable_host
from cordon_config.model import Config, Egress, Limits, Route, route_for_host

from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.admission import EgressPolicy, RateLimiter, retry_after, rule_refusal
from cordon_proxy.core.errors import error_response
from cordon_proxy.core.exchange import Exchange, Outcome, host_value, is_websocket
from cordon_proxy.core.http1 import (
    Body,
    FramingError,
    Headers,
    MessageEnd,
    RequestEvent,
    RequestHead,
    RequestParser,
    ResponseParser,
    Upgrade,
    write_response_head,
)
from cordon_proxy.core.inject import InjectionError, injected_header
from cordon_proxy.core.policy import (
    TargetError,
    blocked_name,
    blocked_reason,
    literal_address,
    parse_connect_target,
    self_connect,
)
from cordon_proxy.core.routing import AuthorityError, parse_absolute, parse_authority, same_host
from cordon_proxy.core.scrub import KeyForms, key_patterns
from cordon_proxy.core.states import ProtocolError, Read, State

__all__ = ["TRANSITIONS", "Session", "Settings", "SettingsRef", "Tunnel"]

IPAddress = IPv4Address | IPv6Address
#: cordon's answers that refuse by policy: audited as ``denied`` (other answers to routed requests: ``failed``)
DENIALS = frozenset({"route-policy", "egress-denied", "blocked", "proxy-auth-required", "https-required",
                     "host-mismatch"})
#: answers to requests without a route that are audited all the same (policy decisions)
UNROUTED_DECISIONS = frozenset({"egress-denied", "blocked"})
CONNECTION_ESTABLISHED = b"HTTP/1.1 200 Connection established\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Settings:
    """What the sessions of one proxy share; replaced as a whole (:class:`SettingsRef`), never changed."""

    routes: Sequence[Route]
    listen_port: int
    version: str = "0"
    max_head: int = 65536
    verify_token: Callable[[str], str | None] | None = None
    limits: Limits = field(default_factory=Limits)  # the edge's timeouts and connection limit
    config: Config | None = None  # the cordon.toml these came from (secret sources read their settings there)
    egress: EgressPolicy = field(default_factory=lambda: EgressPolicy(Egress()))  # hosts without a route
    #: GET /health's answer for its query string (None: a malformed query, 400); default: {"status": "ok"}
    health: Callable[[str], Mapping[str, object] | None] | None = None
    #: whether the token a connection authenticated with (as ``verify_token`` named it) still holds
    token_valid: Callable[[str], bool] | None = None

    @classmethod
    def from_config(
        cls, config: Config, *, version: str, verify_token: Callable[[str], str | None] | None,
        health: Callable[[str], Mapping[str, object] | None] | None = None,
        token_valid: Callable[[str], bool] | None = None,
    ) -> Settings:
        return cls(
            routes=config.routes,
            listen_port=config.listen,
            version=version,
            max_head=config.limits.header_bytes,
            verify_token=verify_token,
            limits=config.limits,
            config=config,
            egress=EgressPolicy(config.egress),
            health=health,
            token_valid=token_valid,
        )

    def health_body(self, query: str = "") -> bytes | None:
        """The JSON body of GET /health?``query``, or None when the query is malformed."""
        if self.health is not None:
            answer = self.health(query)
        else:
            answer = None if query else {"status": "ok"}
        return None if answer is None else json.dumps(answer, separators=(",", ":")).encode()


class SettingsRef:
    """The one swappable reference to the current :class:`Settings` (a reload calls :meth:`swap`), and what
    outlives a swap: the routes' rate-limit buckets and the edge's clock (monotonic seconds; the core never
    reads time itself). Without a clock, a route with a rate limit is a bug of the edge (ProtocolError)."""

    __slots__ = ("clock", "current", "limiter")

    def __init__(self, settings: Settings, *, clock: Callable[[], float] | None = None) -> None:
        self.current = settings
        self.clock = clock
        self.limiter = RateLimiter()

    def swap(self, settings: Settings) -> None:
        """New requests (on new and existing connections) use ``settings``; requests in flight keep theirs."""
        self.current = settings


@dataclass(slots=True)
class Tunnel:
    """The MITM tunnel a connection is inside: the CONNECT target and its route."""

    host: str
    port: int
    route: Route
    routes: Sequence[Route] = ()  # the settings' routes it was found in (a reload gives new ones)
    host_ok: bytes | None = None  # the last Host value checked against this tunnel (the same one is accepted)
    host_header: bytes = b""  # the Host header sent upstream

    def named_by(self, host: str, port: int | None) -> bool:
        return same_host(host, self.host) and (port is None or port == self.port)


class Session:
    """One client connection's protocol state. Feed events with :meth:`handle`; carry out the commands."""

    def __init__(self, settings: Settings | SettingsRef) -> None:
        self._settings_ref = settings if isinstance(settings, SettingsRef) else SettingsRef(settings)
        self.settings = self._settings_ref.current  # those of the request being handled
        self.state = State.IDLE
        self.tunnel: Tunnel | None = None  # set by a CONNECT to a routed host: requests are read inside it
        self.token_name: str | None = None  # the proxy token this connection authenticated with
        self._awaiting: cmd.Awaited | None = None  # the command whose reply the state waits for
        self._parser = RequestParser(self.settings.max_head)
        self._pending: deque[RequestEvent] = deque()  # parsed client events not yet handled (pipelining)
        self._head: RequestHead | None = None  # the request being handled (answered or forwarded)
        self._record: cmd.RequestRecord | None = None  # its log record
        self._exchange: Exchange | None = None  # its exchange, once it is to be forwarded
        self._target: tuple[str, int] = ("", 0)  # the unrouted CONNECT target being checked or tunnelled
        self._leftover = b""  # client bytes that followed a CONNECT head
        self._linger = False  # closed while the client still sends a body: read it off, then close
        self._response_parser: ResponseParser | None = None  # one per session, reset per exchange (no gc cycle)
        # the last route and secret seen, the header that injects it and the patterns that scrub it
        self._injected_for: tuple[Route, object, tuple[bytes, bytes], KeyForms] | None = None

    # -- what the edge asks ---------------------------------------------------------------------------
    @property
    def next_read(self) -> Read:
        """What the edge reads next (and so which timeout applies)."""
        state = self.state
        if state is State.FORWARD:
            exchange = self._exchange
            assert exchange is not None
            return Read.RESPONSE if exchange.body_done else Read.BODY
        if state is State.IDLE:
            return Read.HEAD if self._parser.in_head else Read.REQUEST
        if state is State.CLOSED:
            return Read.DISCARD if self._linger else Read.DONE
        if state is State.SPLICED:
            return Read.DONE
        return Read.REPLY

    @property
    def awaiting(self) -> cmd.Awaited | None:
        """The command whose reply the session waits for, if any."""
        return self._awaiting

    @property
    def closed(self) -> bool:
        return self.state is State.CLOSED

    # -- the entry point ------------------------------------------------------------------------------
    def handle(self, event: ev.Event) -> list[cmd.Command]:
        """Advance the state machine by one event; return the commands to carry out, in order."""
        state = self.state
        handler = TRANSITIONS[state].get(type(event))
        if handler is None:
            if state is State.CLOSED:
                return []
            raise ProtocolError(f"{type(event).__name__} is not expected in state {state.name}")
        out: list[cmd.Command] = []
        getattr(self, handler)(event, out)
        return out

    def _await(self, command: cmd.Awaited, state: State, out: list[cmd.Command]) -> None:
        self._awaiting = command
        self.state = state
        out.append(command)

    def _reply(self, event: ev.Reply) -> None:
        if event.for_ is not self._awaiting:
            raise ProtocolError(f"{type(event).__name__} answers a command this session is not awaiting")
        self._awaiting = None

    # -- client bytes (IDLE, FORWARD) -----------------------------------------------------------------
    def _on_client_data(self, event: ev.ClientData, out: list[cmd.Command]) -> None:
        try:
            self._parse(event.data)
        except FramingError as exc:
            self._pending.clear()
            code = "header-too-large" if exc.status == 431 else "bad-request"
            message = "request header too large" if exc.status == 431 else f"malformed request: {exc.reason}"
            self._fail(out, code, message)
            return
        self._pump(out)

    def _parse(self, data: bytes) -> None:
        events = self._parser.feed(data)
        if events and type(events[-1]) is Upgrade:
            head = next((e for e in events if isinstance(e, RequestHead)), None)
            if head is not None and self.tunnel is not None and is_websocket(head):
                head.upgrade = True
            elif head is None or head.method != "CONNECT":
                # Non-CONNECT Upgrade (h2c, websocket): treated as an ordinary request; Upgrade is hop-by-hop.
                last = events.pop()
                assert isinstance(last, Upgrade)
                self._pending.extend(events)
                if last.leftover:
                    self._parse(last.leftover)
                return
        self._pending.extend(events)

    def _pump(self, out: list[cmd.Command]) -> None:
        """Handle queued parser events as far as the state allows (a pipelined request waits for ``IDLE``)."""
        pending = self._pending
        while pending:
            state = self.state
            if state is State.IDLE:
                item = pending.popleft()
                if type(item) is RequestHead:
                    item.upgrade = item.upgrade and self.tunnel is not None and is_websocket(item)
                    self._on_request_head(item, out)
                elif isinstance(item, Upgrade) and item.leftover:
                    # a WebSocket upgrade that the upstream declined: its leftover is the next request
                    try:
                        self._parse(item.leftover)
                    except FramingError:
                        self._fail(out, "bad-request", "malformed request")
                        return
                continue
            if state is not State.FORWARD:
                return
            exchange = self._exchange
            assert exchange is not None
            if exchange.body_done:
                return  # pipelined next request: wait until the response is complete
            item = pending.popleft()
            if type(item) is Body:
                exchange.body_to_upstream(item.data, out)
            elif type(item) is MessageEnd:
                exchange.request_end(out)
                if exchange.record.status:  # the response finished before the request body did
                    self._finish(out)

    # -- a request head (IDLE) ------------------------------------------------------------------------
    def _on_request_head(self, head: RequestHead, out: list[cmd.Command]) -> None:
        settings = self.settings = self._settings_ref.current
        self._head = head
        record = self._record = cmd.RequestRecord(head.method, "", "", token=self.token_name)
        out.append(cmd.RequestStarted())
        token = self.token_name
        if token is not None and settings.token_valid is not None and not settings.token_valid(token):
            record.host = self.tunnel.host if self.tunnel is not None else "?"
            self._answer(out, record, "proxy-auth-required", "proxy authentication required (the token has ended)")
            return
        if self.tunnel is not None:
            self._on_tunnel_request(self.tunnel, head, record, out)
        elif head.method == "CONNECT":
            self._on_connect(head, record, out)
        elif head.target.startswith("/") or head.target == "*":
            self._on_origin_form(head, record, out)
        else:
            self._on_absolute_form(head, record, out)

    def _skip_body(self) -> None:
        """Drop the queued MessageEnd/Upgrade that belong to a head that is answered locally."""
        while self._pending and isinstance(self._pending[0], MessageEnd | Upgrade):
            item = self._pending.popleft()
            if isinstance(item, Upgrade):
                self._leftover = item.leftover

    # origin-form: /health only
    def _on_origin_form(self, head: RequestHead, record: cmd.RequestRecord, out: list[cmd.Command]) -> None:
        path = head.target.split("?", 1)[0]
        record.path = path
        record.host = "cordon"
        hosts = head.values(b"host")
        port = self.settings.listen_port
        allowed = {f"127.0.0.1:{port}".encode(), f"localhost:{port}".encode()}
        if head.method != "GET" or path != "/health" or head.body != "none":
            self._answer(out, record, "not-found", "only GET /health is served on the proxy port")
            return
        if len(hosts) != 1 or hosts[0].lower() not in allowed:
            self._answer(out, record, "bad-request", "GET /health needs Host 127.0.0.1:<port> or localhost:<port>")
            return
        body = self.settings.health_body(head.target.partition("?")[2])
        if body is None:
            self._answer(out, record, "bad-request", "malformed /health query (expected nonce=<64 hex>&auth=<hex>)")
            return
        self._skip_body()
        headers: Headers = [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Cache-Control", b"no-store"),
            (b"Connection", b"close"),  # one answer per connection: a /health loop cannot hold a slot
        ]
        out.append(cmd.SendClient(write_response_head(200, headers, version="1.1") + body))
        record.status = 200
        record.bytes = len(body)
        out.append(cmd.LogRequest(record))
        self._head = self._record = None
        self._close(out)

    # CONNECT
    def _on_connect(self, head: RequestHead, record: cmd.RequestRecord, out: list[cmd.Command]) -> None:
        self._skip_body()
        try:
            host, port = parse_connect_target(head.target)
        except TargetError as exc:
            record.host = "?"
            self._answer(out, record, "bad-request", f"malformed request: {exc}")
            return
        record.host = f"{host}:{port}"
        route = route_for_host(self.settings.routes, host, port)
        record.route = route.name if route else None
        if not self._check_token(head, record=record, out=out):
            return
        if route is None:
            self._target = (host, port)
            if self._egress_allowed(host, record, out):
                self._check_destination(host, port, record, out)
            return
        if self._leftover:
            self._answer(out, record, "bad-request", "malformed request: data sent before the tunnel opened")
            return
        self.tunnel = Tunnel(route.host, port, route, self.settings.routes)
        out.append(cmd.SendClient(CONNECTION_ESTABLISHED))
        record.status = 200
        out.append(cmd.LogRequest(record))
        self._head = self._record = None
        self._await(cmd.StartClientTLS(route.host), State.HANDSHAKE, out)

    def _on_client_tls(self, event: ev.ClientTLSReady, out: list[cmd.Command]) -> None:
        self._reply(event)
        tunnel = self.tunnel
        assert tunnel is not None
        if event.sni is None or not same_host(event.sni, tunnel.host):
            record = cmd.RequestRecord("TLS", tunnel.host, "", route=tunnel.route.name)
            record.status = 421
            record.error = "host-mismatch"
            record.decision = "denied"
            out.append(cmd.LogRequest(record))
            self._close(out)
            return
        self.state = State.IDLE
        self._parser = RequestParser(self.settings.max_head)
        out.append(cmd.MitmStarted(tunnel.host, tunnel.route.name))

    # unrouted destinations (CONNECT tunnels and plain http://)
    def _egress_allowed(self, host: str, record: cmd.RequestRecord, out: list[cmd.Command]) -> bool:
        """``[egress] unrouted = "deny"``: a host without a route must be in ``allow`` (else 403)."""
        egress = self.settings.egress
        if not egress.deny or egress.allows(host):
            return True
        shown = comparable_host(host)
        self._answer(out, record, "egress-denied",
                     f'egress to {shown} is denied ([egress] unrouted = "deny"); allow it with: '
                     f"cordon egress allow {shown}")
        return False

    def _check_destination(self, host: str, port: int, record: cmd.RequestRecord, out: list[cmd.Command]) -> None:
        """Refuse local names, check literals at once, else ask for resolution."""
        name_reason = blocked_name(host)
        if name_reason is not None:
            self._answer(out, record, "blocked", f"destination {host} is not allowed ({name_reason})")
            return
        address = literal_address(host)
        if address is not None:
            self._check_addresses([address], out)
            return
        self._await(cmd.Resolve(host, port), State.RESOLVE, out)

    def _on_resolved(self, event: ev.Resolved, out: list[cmd.Command]) -> None:
        self._reply(event)
        self._check_addresses(event.addresses, out)

    def _check_addresses(self, addresses: list[IPAddress], out: list[cmd.Command]) -> None:
        """Every address must pass the SSRF policy; then open the tunnel or the upstream connection."""
        record = self._record
        assert record is not None
        exchange = self._exchange
        host, port = self._target if exchange is None else (exchange.upstream_host, exchange.upstream_port)
        if not addresses:
            self._answer(out, record, "upstream-failed", f"upstream {host}: name did not resolve")
            return
        for address in addresses:
            reason = blocked_reason(address)
            if reason is None and self_connect(address, port, self.settings.listen_port):
                reason = "the proxy itself"
            if reason is not None:
                self._answer(out, record, "blocked", f"destination {address} is not allowed ({reason})")
                return
        if exchange is None:
            self._await(cmd.OpenTunnel(host, port, tuple(addresses)), State.OPEN_TUNNEL, out)
        else:
            exchange.addresses = tuple(addresses)
            self._await(exchange.open_command(), State.OPEN_UPSTREAM, out)

    def _on_tunnel_connected(self, event: ev.TunnelConnected, out: list[cmd.Command]) -> None:
        self._reply(event)
        record = self._record
        assert record is not None
        record.status = 200
        self.state = State.SPLICED
        out.append(cmd.SendClient(CONNECTION_ESTABLISHED))
        out.append(cmd.Splice(self._leftover, record))
        self._leftover = b""

    # requests inside a MITM tunnel
    def _on_tunnel_request(
        self, tunnel: Tunnel, head: RequestHead, record: cmd.RequestRecord, out: list[cmd.Command]
    ) -> None:
        if tunnel.routes is not self.settings.routes:  # reloaded: this request follows the current route
            current = route_for_host(self.settings.routes, tunnel.host, tunnel.port)
            if current is None:
                record.host = tunnel.host
                self._answer(out, record, "host-mismatch",
                             f"no route for {tunnel.host} since the last reload: open a new connection")
                return
            tunnel.route, tunnel.routes, tunnel.host_header = current, self.settings.routes, b""
        route = tunnel.route
        record.route = route.name
        record.host = tunnel.host
        target = head.target
        if head.method == "CONNECT":
            record.path = ""
            self._answer(out, record, "bad-request", "malformed request: CONNECT inside a tunnel")
            return
        if target.startswith("/"):
            path = target
        else:
            try:
                scheme, host, port, path = parse_absolute(target)
            except AuthorityError as exc:
                self._answer(out, record, "bad-request", f"malformed request: {exc}")
                return
            if scheme != "https" or not tunnel.named_by(host, port):
                record.path = path.split("?", 1)[0]
                self._answer(out, record, "host-mismatch", f"request host {host} does not match tunnel host {tunnel.host}")
                return
        record.path = path.split("?", 1)[0]
        hosts = head.values(b"host")
        if len(hosts) != 1 and head.version == "1.1":
            self._answer(out, record, "bad-request", "malformed request: exactly one Host header is required")
            return
        if hosts and hosts[0] != tunnel.host_ok:
            try:
                host, port = parse_authority(hosts[0].decode("ascii"))
            except (AuthorityError, UnicodeDecodeError):
                self._answer(out, record, "bad-request", "malformed request: invalid Host header")
                return
            if not tunnel.named_by(host, port):
                self._answer(out, record, "host-mismatch", f"request host {host} does not match tunnel host {tunnel.host}")
                return
            tunnel.host_ok = hosts[0]
        exchange = self._exchange = Exchange(head, record, path)
        exchange.route = route
        exchange.upstream_host = route.host
        exchange.upstream_port = tunnel.port
        exchange.upstream_tls = route.host
        if not tunnel.host_header:
            tunnel.host_header = host_value(route.host, tunnel.port, 443)
        exchange.host_header = tunnel.host_header
        self._admit(exchange, out)

    # absolute-form on the plain listener
    def _on_absolute_form(self, head: RequestHead, record: cmd.RequestRecord, out: list[cmd.Command]) -> None:
        try:
            scheme, host, port, path = parse_absolute(head.target)
        except AuthorityError as exc:
            record.host = "?"
            self._answer(out, record, "bad-request", f"malformed request: {exc}")
            return
        record.host = host
        record.path = path.split("?", 1)[0]
        if scheme != "http":
            self._answer(out, record, "bad-request", "malformed request: use CONNECT for https:// targets")
            return
        port = port or 80
        route = route_for_host(self.settings.routes, host, port)
        record.route = route.name if route else None
        if not self._check_token(head, record=record, out=out):
            return
        exchange = self._exchange = Exchange(head, record, path)
        exchange.upstream_host = host
        exchange.upstream_port = port
        exchange.host_header = host_value(host, port, 80)
        if route is None:
            if self._egress_allowed(host, record, out):
                self._check_destination(host, port, record, out)
            return
        if not route.allow_plain_http:
            self._answer(out, record, "https-required", f'route "{route.name}" requires https')
            return
        for value in head.values(b"host"):
            try:
                h, p = parse_authority(value.decode("ascii"))
            except (AuthorityError, UnicodeDecodeError):
                self._answer(out, record, "bad-request", "malformed request: invalid Host header")
                return
            if not same_host(h, host) or (p is not None and p != port):
                self._answer(out, record, "host-mismatch", f"request host {h} does not match target host {host}")
                return
        exchange.route = route
        exchange.upstream_host = route.host
        exchange.host_header = host_value(route.host, port, 80)
        self._admit(exchange, out)

    def _check_token(self, head: RequestHead, *, record: cmd.RequestRecord, out: list[cmd.Command]) -> bool:
        """With proxy tokens on, every tunnel and every forwarded request needs a valid one, routed or not."""
        verify = self.settings.verify_token
        if verify is None:
            return True
        values = head.values(b"proxy-authorization")
        if not values:
            self._answer(out, record, "proxy-auth-required", "proxy authentication required")
            return False
        name: str | None = None
        if len(values) == 1:
            try:
                name = verify(values[0].decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                name = None
        if name is None:
            self._answer(out, record, "proxy-auth-required", "proxy authentication required (invalid token)")
            return False
        self.token_name = name
        record.token = name
        out.append(cmd.Authenticated(name))
        return True

    # -- a routed request: admitted, secret, upstream, forward ----------------------------------------
    def _admit(self, exchange: Exchange, out: list[cmd.Command]) -> None:
        """The head is accepted and bound to its route: the policy step before any secret is fetched. A request
        outside the route's method/path rules gets 403 ``route-policy``, one over its rate limit 429
        ``rate-limited``; either way nothing is forwarded and no secret is fetched."""
        route = exchange.route
        assert route is not None
        record = exchange.record
        if route.methods is not None or route.paths is not None:
            refusal = rule_refusal(route, exchange.head.method, exchange.path)
            if refusal is not None:
                record.decision = "denied"
                self._answer(out, record, "route-policy", refusal)
                return
        limit = route.rate_limit
        if limit is not None:
            ref = self._settings_ref
            if ref.clock is None:
                raise ProtocolError(f'route "{route.name}" has a rate limit but the edge gave no clock')
            wait = ref.limiter.take(route.name, limit, ref.clock())
            if wait:
                record.decision = "rate-limited"
                seconds = retry_after(wait)
                self._answer(out, record, "rate-limited",
                             f'route "{route.name}" allows {limit.requests_per_minute} requests per minute; '
                             f"retry in {seconds.decode()} s", extra=[(b"Retry-After", seconds)])
                return
        self._await(cmd.FetchSecret(route), State.SECRET, out)

    def _on_secret(self, event: ev.SecretReady, out: list[cmd.Command]) -> None:
        self._reply(event)
        exchange = self._exchange
        assert exchange is not None and exchange.route is not None
        route = exchange.route
        cached = self._injected_for
        if cached is not None and cached[0] is route and cached[1] is event.secret:
            injected, patterns = cached[2], cached[3]  # a secret-cache hit for the same route: same header
        else:
            try:
                injected = injected_header(route, event.secret)
            except InjectionError as exc:
                self._fail(out, "secret-unavailable", str(exc))
                return
            patterns = key_patterns(route, event.secret.reveal())
            self._injected_for = (route, event.secret, injected, patterns)
        exchange.injected = injected
        if route.scrub_responses:
            exchange.patterns = patterns
        self._await(exchange.open_command(), State.OPEN_UPSTREAM, out)

    def _on_secret_failed(self, event: ev.SecretFailed, out: list[cmd.Command]) -> None:
        self._reply(event)
        self._fail(out, "secret-unavailable", event.reason)

    def _on_resolve_failed(self, event: ev.ResolveFailed, out: list[cmd.Command]) -> None:
        self._reply(event)
        self._fail(out, "upstream-failed", event.reason)

    def _on_upstream_failed(self, event: ev.UpstreamFailed, out: list[cmd.Command]) -> None:
        self._reply(event)
        self._fail(out, event.code, event.message)

    def _on_upstream_connected(self, event: ev.UpstreamConnected, out: list[cmd.Command]) -> None:
        self._reply(event)
        exchange = self._exchange
        assert exchange is not None
        parser = self._response_parser
        if parser is None:
            parser = self._response_parser = ResponseParser(self.settings.max_head)
        else:
            parser.reset()
        self.state = State.FORWARD
        if exchange.route is not None:
            exchange.record.decision = "injected"
        out.append(cmd.SendUpstream(exchange.request_head(parser, event.reused)))
        self._pump(out)

    # -- the response (FORWARD) -----------------------------------------------------------------------
    def _on_upstream_data(self, event: ev.UpstreamData, out: list[cmd.Command]) -> None:
        exchange = self._exchange
        assert exchange is not None
        outcome = exchange.upstream_data(event.data, out)
        if outcome is not Outcome.MORE:
            self._response_over(exchange, outcome, out)

    def _on_upstream_closed(self, event: ev.UpstreamClosed, out: list[cmd.Command]) -> None:
        exchange = self._exchange
        assert exchange is not None
        if exchange.can_retry():
            exchange.retried = True
            exchange.leased = False
            exchange.response = None
            out.append(cmd.ReleaseUpstream(False))
            self._await(exchange.open_command(fresh=True), State.OPEN_UPSTREAM, out)
            return
        outcome = exchange.upstream_eof(out)
        if outcome is not Outcome.MORE:
            self._response_over(exchange, outcome, out)

    def _on_upstream_timeout(self, event: ev.UpstreamTimeout, out: list[cmd.Command]) -> None:
        exchange = self._exchange
        assert exchange is not None
        message = f"upstream {exchange.upstream_host} timed out after {event.seconds:g} s"
        self._upstream_broken(out, "upstream-timeout", message)

    def _response_over(self, exchange: Exchange, outcome: Outcome, out: list[cmd.Command]) -> None:
        if outcome is Outcome.DONE:
            exchange.leased = False
            out.append(cmd.ReleaseUpstream(exchange.reusable and exchange.body_done))
            if not exchange.body_done:
                exchange.close_after = True
            self._finish(out)
        elif outcome is Outcome.UPGRADE:
            self._start_websocket(exchange, out)
        else:
            self._upstream_broken(out, *exchange.error)

    def _start_websocket(self, exchange: Exchange, out: list[cmd.Command]) -> None:
        """After the upstream's 101: hand both connections to the edge to splice until either closes."""
        client_leftover = b""
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, Upgrade):
                client_leftover += item.leftover
        exchange.leased = False
        self._exchange = None
        self._head = self._record = None
        self.state = State.SPLICED
        out.append(cmd.Splice(client_leftover, exchange.record, to_client=exchange.leftover, upstream=True))

    def _finish(self, out: list[cmd.Command]) -> None:
        """The exchange is complete: log it, then the next request (or close)."""
        exchange = self._exchange
        assert exchange is not None
        out.append(cmd.LogRequest(exchange.record))
        linger = self._client_still_sending()
        self._exchange = None
        self._head = self._record = None
        self.state = State.IDLE
        if exchange.close_after or not exchange.body_done:
            self._close(out, linger=linger)
            return
        self._pump(out)

    def _upstream_broken(self, out: list[cmd.Command], code: str, message: str) -> None:
        """The upstream failed mid-exchange: answer with an error if nothing was sent yet, else abort."""
        exchange = self._exchange
        if exchange is not None and exchange.leased:
            exchange.leased = False
            out.append(cmd.ReleaseUpstream(False))
        if exchange is not None and exchange.response_started:
            exchange.record.error = code
            out.append(cmd.LogRequest(exchange.record))
            self._exchange = None
            self.state = State.CLOSED
            self._pending.clear()
            out.append(cmd.CloseClient(abort=True))
            return
        self._fail(out, code, message)

    def _on_client_closed(self, event: ev.ClientClosed, out: list[cmd.Command]) -> None:
        exchange = self._exchange
        if exchange is not None:
            if exchange.leased:
                exchange.leased = False
                out.append(cmd.ReleaseUpstream(False))
            exchange.record.error = "client-closed"
            if exchange.route is not None and exchange.record.decision is None:
                exchange.record.decision = "failed"
            out.append(cmd.LogRequest(exchange.record))
            self._exchange = None
        self._close(out)

    # -- answers --------------------------------------------------------------------------------------
    def _fail(self, out: list[cmd.Command], code: str, message: str) -> None:
        """Answer the request being handled (or the connection) with an error and close."""
        exchange = self._exchange
        if exchange is not None and exchange.response_started:
            self._upstream_broken(out, code, message)
            return
        self._answer(out, self._record or cmd.RequestRecord("-", "", ""), code, message)

    def _answer(self, out: list[cmd.Command], record: cmd.RequestRecord, code: str, message: str,
                extra: list[tuple[bytes, bytes]] | None = None) -> None:
        """cordon's own error answer (it always closes the connection)."""
        exchange = self._exchange
        if exchange is not None and exchange.leased:
            exchange.leased = False
            out.append(cmd.ReleaseUpstream(False))
        if record.decision is None and (record.route is not None or code in UNROUTED_DECISIONS):
            record.decision = "denied" if code in DENIALS else "failed"
        extra = extra if extra is not None else []
        if code == "proxy-auth-required":
            extra.append((b"Proxy-Authenticate", b'Basic realm="cordon"'))
        response = error_response(code, message, extra_headers=extra)
        out.append(cmd.SendClient(response))
        record.status = int(response[9:12])
        record.bytes = len(response) - response.index(b"\r\n\r\n") - 4  # the body cordon wrote, as for upstreams
        record.error = code
        out.append(cmd.LogRequest(record))
        linger = self._client_still_sending()
        self._exchange = None
        self._close(out, linger=linger)

    def _client_still_sending(self) -> bool:
        """The request being answered has a body the client has not finished sending (answered early, or
        refused before it was forwarded: a 407, a 400, a 421 …)."""
        exchange = self._exchange
        if exchange is not None:
            unfinished = not exchange.body_done
        else:
            head = self._head
            unfinished = head is not None and head.body != "none"
        return unfinished and not any(type(item) is MessageEnd for item in self._pending)

    def _close(self, out: list[cmd.Command], *, linger: bool = False) -> None:
        self.state = State.CLOSED
        self._linger = linger
        self._awaiting = None
        self._pending.clear()
        out.append(cmd.CloseClient(linger=linger))


_ANYWHERE: dict[type[ev.Event], str] = {ev.ClientClosed: "_on_client_closed"}

TRANSITIONS: dict[State, dict[type[ev.Event], str]] = {
    State.IDLE: {ev.ClientData: "_on_client_data", **_ANYWHERE},
    State.HANDSHAKE: {ev.ClientTLSReady: "_on_client_tls", **_ANYWHERE},
    State.RESOLVE: {ev.Resolved: "_on_resolved", ev.ResolveFailed: "_on_resolve_failed", **_ANYWHERE},
    State.OPEN_TUNNEL: {ev.TunnelConnected: "_on_tunnel_connected", ev.UpstreamFailed: "_on_upstream_failed", **_ANYWHERE},
    State.SECRET: {ev.SecretReady: "_on_secret", ev.SecretFailed: "_on_secret_failed", **_ANYWHERE},
    State.OPEN_UPSTREAM: {
        ev.UpstreamConnected: "_on_upstream_connected",
        ev.UpstreamFailed: "_on_upstream_failed",
        **_ANYWHERE,
    },
    State.FORWARD: {
        ev.ClientData: "_on_client_data",
        ev.UpstreamData: "_on_upstream_data",
        ev.UpstreamClosed: "_on_upstream_closed",
        ev.UpstreamTimeout: "_on_upstream_timeout",
        **_ANYWHERE,
    },
    State.SPLICED: dict(_ANYWHERE),
    State.CLOSED: {},
}
"""Per state, the events it expects and the :class:`Session` method that handles each; any other event raises
:class:`ProtocolError` (``CLOSED`` ignores every event). Methods are named, not bound, so a test can wrap one."""
