"""The per-connection state machine: ``Session.handle(event) -> list[Command]`` (sans-IO).

Theory of operation. A client connection starts in *proxy* mode on cordon's plain listener:

* ``CONNECT host:port`` to a routed host → token check → ``200`` → :class:`StartClientTLS` → *mitm* mode,
  where every request must name the CONNECT host (Host header, absolute-form authority, and the TLS SNI
  reported by :class:`ClientTLSReady`), else 421 and nothing is forwarded.
* ``CONNECT`` to any other host → SSRF check of every resolved address → :class:`OpenTunnel` → ``200`` →
  :class:`Splice` (*tunnel* mode; the edge relays bytes, the session is done).
* origin-form: only ``GET /health`` with ``Host: 127.0.0.1:<port>`` or ``localhost:<port>``; else 400.
* absolute-form ``http://``: unrouted → SSRF-checked and forwarded; routed → 403 unless the route sets
  ``allow_plain_http``.

A routed request is forwarded as: :class:`FetchSecret` → :class:`OpenUpstream` (TLS verified for the route
host) → re-serialised head with the injected header → body streamed → response streamed back. One request is
in flight per connection; pipelined requests wait in ``_pending``. ``wants_client_data`` tells the edge when
to read from the client (backpressure: never more than one read ahead).

Also here: a WebSocket upgrade inside a MITM tunnel is injected like any request and, after the upstream's
``101``, handed to the edge as a :class:`Splice` of both connections; a bodyless GET/HEAD/OPTIONS that meets a
pooled connection the upstream had already closed (no response byte) is resent once on a fresh connection.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from cordon_config.model import Route

from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.errors import error_response
from cordon_proxy.core.exchange import Forwarding, Request, host_value, is_websocket
from cordon_proxy.core.http1 import (
    LAST_CHUNK,
    Body,
    FramingError,
    Headers,
    MessageEnd,
    RequestHead,
    RequestParser,
    ResponseParser,
    Upgrade,
    encode_chunk,
    write_response_head,
)
from cordon_proxy.core.inject import injected_header  # noqa: F401 - kept importable here (fault-injection tests)
from cordon_proxy.core.policy import (
    TargetError,
    blocked_name,
    blocked_reason,
    literal_address,
    parse_connect_target,
    self_connect,
)
from cordon_proxy.core.routing import AuthorityError, find_route, parse_absolute, parse_authority, same_host

__all__ = ["Session", "Settings"]

IPAddress = IPv4Address | IPv6Address
LOOPBACK_REASON = "loopback address"


@dataclass(frozen=True, slots=True)
class Settings:
    """What every session of one proxy shares (built once at start)."""

    routes: Sequence[Route]
    listen_port: int
    version: str = "0"
    max_head: int = 65536
    verify_token: Callable[[str], str | None] | None = None
    allow_loopback: bool = False  # test-only (CORDON_TEST_ALLOW_LOOPBACK); never set in product

    def health_body(self) -> bytes:
        return json.dumps({"status": "ok", "version": self.version, "routes": len(self.routes)}).encode()


class Session(Forwarding):
    """One client connection's protocol state. Feed events with :meth:`handle`; perform the commands."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.mode = "proxy"  # proxy | handshake | mitm | tunnel | closed
        self.phase = "idle"  # idle | secret | resolve | connect | forward
        self._parser = RequestParser(settings.max_head)
        self._pending: deque[object] = deque()
        self._request: Request | None = None
        self._head: RequestHead | None = None  # the head being handled before it has a Request (or answered)
        self._response: ResponseParser | None = None  # the exchange in flight (``_response_parser`` or None)
        self._response_parser: ResponseParser | None = None
        self._injected_for: tuple[Route, object, tuple[bytes, bytes]] | None = None  # route, secret, header
        self._leased = False
        self.tunnel_host = ""
        self.tunnel_port = 0
        self.tunnel_route: Route | None = None
        self.token_name: str | None = None
        self._connect_record: cmd.RequestRecord | None = None
        self._connect_leftover = b""
        self._injected: tuple[bytes, bytes] | None = None
        self._response_keep_alive = False
        self._upstream_reused = False
        self._last_injected: tuple[bytes, bytes] | None = None
        self._tunnel_host_ok: bytes | None = None  # the last Host value checked against this MITM tunnel
        self._tunnel_host_header = b""  # the Host header sent upstream for this MITM tunnel

    # -- what the edge asks ---------------------------------------------------------------------------
    @property
    def wants_client_data(self) -> bool:
        """True when the edge should read from the client now."""
        if self.mode not in ("proxy", "mitm") or self._pending:
            return False
        if self.phase == "idle":
            return True
        return self.phase == "forward" and self._request is not None and not self._request.body_done

    @property
    def idle(self) -> bool:
        """True between requests (the client idle timeout applies)."""
        return self.mode in ("proxy", "mitm") and self.phase == "idle" and not self._pending

    @property
    def receiving_head(self) -> bool:
        """True while part of a request head has arrived but not all of it (the head timeout applies)."""
        return self.idle and self._parser.in_head

    @property
    def awaiting_response_head(self) -> bool:
        """True while the upstream owes the response head (the response-header timeout applies)."""
        req = self._request
        return self.phase == "forward" and req is not None and not req.response_started

    @property
    def closed(self) -> bool:
        return self.mode == "closed"

    # -- the entry point ------------------------------------------------------------------------------
    def handle(self, event: object) -> list[object]:
        """Advance the state machine by one event; return the commands to carry out, in order."""
        out: list[object] = []
        if self.mode == "closed":
            return out
        if isinstance(event, ev.ClientData):
            self._on_client_data(event.data, out)
        elif isinstance(event, ev.UpstreamData):
            self._on_upstream_data(event.data, out)
        elif isinstance(event, ev.SecretReady):
            self._on_secret(event, out)
        elif isinstance(event, ev.UpstreamConnected):
            self._upstream_reused = event.reused
            self._on_upstream_connected(out)
        elif isinstance(event, ev.ClientTLSReady):
            self._on_client_tls(event, out)
        elif isinstance(event, ev.SecretFailed):
            self._fail(out, "secret-unavailable", event.reason)
        elif isinstance(event, ev.Resolved):
            self._on_resolved(event.addresses, out)
        elif isinstance(event, ev.ResolveFailed | ev.UpstreamFailed):
            self._leased = False
            code = event.code if isinstance(event, ev.UpstreamFailed) else "upstream-failed"
            self._fail(out, code, event.message if isinstance(event, ev.UpstreamFailed) else event.reason)
        elif isinstance(event, ev.TunnelConnected):
            self._on_tunnel_connected(out)
        elif isinstance(event, ev.UpstreamClosed):
            self._on_upstream_closed(out)
        elif isinstance(event, ev.UpstreamTimeout):
            self._on_upstream_timeout(event.seconds, out)
        elif isinstance(event, ev.ClientClosed):
            self._on_client_closed(out)
        else:
            raise TypeError(f"unknown event {event!r}")
        return out

    # -- client side ----------------------------------------------------------------------------------
    def _on_client_data(self, data: bytes, out: list[object]) -> None:
        if self.mode not in ("proxy", "mitm"):
            return
        try:
            self._parse(data)
        except FramingError as exc:
            self._pending.clear()
            code = "header-too-large" if exc.status == 431 else "bad-request"
            message = "request header too large" if exc.status == 431 else f"malformed request: {exc.reason}"
            self._fail(out, code, message)
            return
        self._pump(out)

    def _parse(self, data: bytes) -> None:
        events = self._parser.feed(data)
        if events and isinstance(events[-1], Upgrade):
            head = next((e for e in events if isinstance(e, RequestHead)), None)
            if head is not None and self.mode == "mitm" and is_websocket(head):
                head.upgrade = True
            elif head is None or head.method != "CONNECT":
                # Non-CONNECT Upgrade (h2c, websocket): treated as an ordinary request; Upgrade is hop-by-hop.
                leftover = events.pop().leftover
                self._pending.extend(events)
                if leftover:
                    self._parse(leftover)
                return
        self._pending.extend(events)

    def _pump(self, out: list[object]) -> None:
        """Process queued parser events as far as the current phase allows."""
        pending = self._pending
        while pending and self.mode in ("proxy", "mitm"):
            event = pending[0]
            if self.phase == "idle":
                pending.popleft()
                if isinstance(event, RequestHead):
                    event.upgrade = event.upgrade and self.mode == "mitm" and is_websocket(event)
                    self._on_request_head(event, out)
                elif isinstance(event, Upgrade) and event.leftover:
                    # a WebSocket upgrade that the upstream declined: its leftover is the next request
                    try:
                        self._parse(event.leftover)
                    except FramingError:
                        self._fail(out, "bad-request", "malformed request")
                        return
                continue
            if self.phase != "forward":
                return
            req = self._request
            if req is None or req.body_done:
                return  # pipelined next request: wait until the response is complete
            pending.popleft()
            if isinstance(event, Body):
                data = encode_chunk(event.data) if req.head.body == "chunked" else event.data
                if data:
                    out.append(cmd.SendUpstream(data))
            elif isinstance(event, MessageEnd):
                req.body_done = True
                if req.head.body == "chunked":
                    out.append(cmd.SendUpstream(LAST_CHUNK))
                if req.record.status:  # the response finished before the request body did
                    self._finish_request(out)

    def _on_request_head(self, head: RequestHead, out: list[object]) -> None:
        self._head = head
        record = cmd.RequestRecord(head.method, "", "", token=self.token_name)
        out.append(cmd.RequestStarted())
        if self.mode == "mitm":
            self._on_tunnel_request(head, record, out)
            return
        if head.method == "CONNECT":
            self._on_connect(head, record, out)
            return
        target = head.target
        if target.startswith("/") or target == "*":
            self._on_origin_form(head, record, out)
            return
        self._on_absolute_form(head, record, out)

    def _skip_body(self, head: RequestHead) -> None:
        """Drop the queued MessageEnd/Upgrade that belong to a head that is answered locally."""
        while self._pending and isinstance(self._pending[0], MessageEnd | Upgrade):
            item = self._pending.popleft()
            if isinstance(item, Upgrade):
                self._connect_leftover = item.leftover

    # origin-form: /health only
    def _on_origin_form(self, head: RequestHead, record: cmd.RequestRecord, out: list[object]) -> None:
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
        self._skip_body(head)
        body = self.settings.health_body()
        headers: Headers = [
            (b"Content-Type", b"application/json"),
            (b"Content-Length", str(len(body)).encode()),
            (b"Cache-Control", b"no-store"),
        ]
        if not head.keep_alive:
            headers.append((b"Connection", b"close"))
        out.append(cmd.SendClient(write_response_head(200, headers, version="1.1") + body))
        record.status = 200
        record.bytes = len(body)
        out.append(cmd.LogRequest(record))
        if not head.keep_alive:
            self._close(out)

    # CONNECT
    def _on_connect(self, head: RequestHead, record: cmd.RequestRecord, out: list[object]) -> None:
        self._skip_body(head)
        try:
            host, port = parse_connect_target(head.target)
        except TargetError as exc:
            record.host = "?"
            self._answer(out, record, "bad-request", f"malformed request: {exc}")
            return
        record.host = f"{host}:{port}"
        route = find_route(self.settings.routes, host, port)
        record.route = route.name if route else None
        if not self._check_token(head, routed=route is not None, record=record, out=out):
            return
        if route is not None:
            if self._connect_leftover:
                self._answer(out, record, "bad-request", "malformed request: data sent before the tunnel opened")
                return
            self.tunnel_host, self.tunnel_port, self.tunnel_route = route.host, port, route
            self.mode = "handshake"
            out.append(cmd.SendClient(b"HTTP/1.1 200 Connection established\r\n\r\n"))
            record.status = 200
            out.append(cmd.LogRequest(record))
            out.append(cmd.StartClientTLS(route.host))
            return
        self.tunnel_host, self.tunnel_port = host, port
        self._connect_record = record
        self._check_destination(host, port, record, out, tunnel=True)

    def _check_destination(
        self, host: str, port: int, record: cmd.RequestRecord, out: list[object], *, tunnel: bool
    ) -> None:
        """Unrouted destination: refuse local names, check literals at once, else ask for resolution."""
        name_reason = blocked_name(host)
        if name_reason is not None and not self.settings.allow_loopback:
            self._answer(out, record, "blocked", f"destination {host} is not allowed ({name_reason})")
            return
        address = literal_address(host)
        if address is not None:
            self._on_resolved([address], out)
            return
        self.phase = "resolve"
        out.append(cmd.Resolve(host, port))

    def _on_resolved(self, addresses: list[IPAddress], out: list[object]) -> None:
        record = self._connect_record if self.mode == "proxy" and self._request is None else None
        req = self._request
        if record is None and req is not None:
            record = req.record
        if record is None:
            return
        host, port = (self.tunnel_host, self.tunnel_port) if req is None else (req.upstream_host, req.upstream_port)
        if not addresses:
            self._answer(out, record, "upstream-failed", f"upstream {host}: name did not resolve")
            return
        for address in addresses:
            reason = blocked_reason(address)
            if reason == LOOPBACK_REASON and self.settings.allow_loopback:
                reason = None
            if reason is None and self_connect(address, port, self.settings.listen_port):
                reason = "the proxy itself"
            if reason is not None:
                self._answer(out, record, "blocked", f"destination {address} is not allowed ({reason})")
                return
        self.phase = "connect"
        if req is None:
            out.append(cmd.OpenTunnel(host, port, tuple(addresses)))
        else:
            req.addresses = tuple(addresses)
            self._leased = True
            out.append(cmd.OpenUpstream(host, port, None, tuple(addresses)))

    def _on_tunnel_connected(self, out: list[object]) -> None:
        record = self._connect_record or cmd.RequestRecord("CONNECT", self.tunnel_host, "")
        record.status = 200
        self.mode = "tunnel"
        self.phase = "idle"
        out.append(cmd.SendClient(b"HTTP/1.1 200 Connection established\r\n\r\n"))
        out.append(cmd.Splice(self._connect_leftover, record))
        self._connect_leftover = b""

    def _on_client_tls(self, event: ev.ClientTLSReady, out: list[object]) -> None:
        if self.mode != "handshake":
            return
        if event.sni is None or not same_host(event.sni, self.tunnel_host):
            record = cmd.RequestRecord("TLS", self.tunnel_host, "", route=self.tunnel_route and self.tunnel_route.name)
            record.status = 421
            record.error = "host-mismatch"
            out.append(cmd.LogRequest(record))
            self._close(out)
            return
        self.mode = "mitm"
        self.phase = "idle"
        self._parser = RequestParser(self.settings.max_head)
        if self.tunnel_route is not None:
            out.append(cmd.MitmStarted(self.tunnel_host, self.tunnel_route.name))

    # requests inside a MITM tunnel
    def _on_tunnel_request(self, head: RequestHead, record: cmd.RequestRecord, out: list[object]) -> None:
        route = self.tunnel_route
        assert route is not None
        record.route = route.name
        record.host = self.tunnel_host
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
            if scheme != "https" or not self._names_tunnel(host, port):
                record.path = path.split("?", 1)[0]
                self._answer(
                    out, record, "host-mismatch", f"request host {host} does not match tunnel host {self.tunnel_host}"
                )
                return
        record.path = path.split("?", 1)[0]
        hosts = head.values(b"host")
        if len(hosts) != 1 and head.version == "1.1":
            self._answer(out, record, "bad-request", "malformed request: exactly one Host header is required")
            return
        if hosts and hosts[0] != self._tunnel_host_ok:  # the same value as the last accepted one is accepted
            try:
                host, port = parse_authority(hosts[0].decode("ascii"))
            except (AuthorityError, UnicodeDecodeError):
                self._answer(out, record, "bad-request", "malformed request: invalid Host header")
                return
            if not self._names_tunnel(host, port):
                self._answer(
                    out, record, "host-mismatch", f"request host {host} does not match tunnel host {self.tunnel_host}"
                )
                return
            self._tunnel_host_ok = hosts[0]
        req = self._start_request(head, record, path)
        req.route = route
        req.upstream_host = route.host
        req.upstream_port = self.tunnel_port
        req.upstream_tls = route.host
        if not self._tunnel_host_header:
            self._tunnel_host_header = host_value(route.host, self.tunnel_port, 443)
        req.host_header = self._tunnel_host_header
        self.phase = "secret"
        out.append(cmd.FetchSecret(route))

    def _names_tunnel(self, host: str, port: int | None) -> bool:
        return same_host(host, self.tunnel_host) and (port is None or port == self.tunnel_port)

    # absolute-form on the plain listener
    def _on_absolute_form(self, head: RequestHead, record: cmd.RequestRecord, out: list[object]) -> None:
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
        route = find_route(self.settings.routes, host, port)
        record.route = route.name if route else None
        if not self._check_token(head, routed=route is not None, record=record, out=out):
            return
        req = self._start_request(head, record, path)
        req.upstream_host = host
        req.upstream_port = port
        req.host_header = host_value(host, port, 80)
        if route is None:
            self._check_destination(host, port, record, out, tunnel=False)
            return
        if not route.allow_plain_http:
            self._answer(out, record, "https-required", f'route "{route.name}" requires https')
            return
        hosts = head.values(b"host")
        for value in hosts:
            try:
                h, p = parse_authority(value.decode("ascii"))
            except (AuthorityError, UnicodeDecodeError):
                self._answer(out, record, "bad-request", "malformed request: invalid Host header")
                return
            if not same_host(h, host) or (p is not None and p != port):
                self._answer(out, record, "host-mismatch", f"request host {h} does not match target host {host}")
                return
        req.route = route
        req.upstream_host = route.host
        req.host_header = host_value(route.host, port, 80)
        self.phase = "secret"
        out.append(cmd.FetchSecret(route))

    def _start_request(self, head: RequestHead, record: cmd.RequestRecord, path: str) -> Request:
        req = Request(head, record)
        req.path = path
        self._request = req
        return req

    def _check_token(self, head: RequestHead, *, routed: bool, record: cmd.RequestRecord, out: list[object]) -> bool:
        verify = self.settings.verify_token
        if verify is None:
            return True
        values = head.values(b"proxy-authorization")
        if not values:
            if not routed:
                return True
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
        return True

    # -- answers --------------------------------------------------------------------------------------
    def _fail(self, out: list[object], code: str, message: str) -> None:
        """Answer the request in flight (or the connection) with an error and close."""
        req = self._request
        record = req.record if req is not None else self._connect_record or cmd.RequestRecord("-", "", "")
        if req is not None and req.response_started:
            self._upstream_broken(out, code, message)
            return
        self._answer(out, record, code, message)

    def _answer(self, out: list[object], record: cmd.RequestRecord, code: str, message: str) -> None:
        if self._leased:
            self._leased = False
            out.append(cmd.ReleaseUpstream(False))
        extra: list[tuple[bytes, bytes]] = []
        if code == "proxy-auth-required":
            extra.append((b"Proxy-Authenticate", b'Basic realm="cordon"'))
        response = error_response(code, message, extra_headers=extra)
        out.append(cmd.SendClient(response))
        record.status = int(response[9:12])
        record.bytes = len(response) - response.index(b"\r\n\r\n") - 4  # the body cordon wrote, as for upstreams
        record.error = code
        out.append(cmd.LogRequest(record))
        linger = self._client_still_sending()
        self._request = None
        self._close(out, linger=linger)

    def _client_still_sending(self) -> bool:
        """The request being answered has a body the client has not finished sending (answered early, or
        refused before it was forwarded: a 407, a 400, a 421 …)."""
        req = self._request
        if req is not None:
            unfinished = not req.body_done
        else:
            head = self._head
            unfinished = head is not None and head.body != "none"
        return unfinished and not any(type(item) is MessageEnd for item in self._pending)

    def _close(self, out: list[object], *, linger: bool = False) -> None:
        self.mode = "closed"
        self.phase = "idle"
        self._pending.clear()
        out.append(cmd.CloseClient(linger=linger))
