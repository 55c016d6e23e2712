"""The forwarding half of a session: one routed or forwarded request/response exchange (sans-IO).

:class:`Forwarding` is mixed into :class:`~cordon_proxy.core.session.Session`: secret → upstream connection →
re-serialised head with the injected header → body → response head and body back to the client, 101 →
WebSocket splice, the one retry of a stale pooled connection, and aborting when the upstream breaks mid-body.
"""

from __future__ import annotations

from collections import deque
from ipaddress import IPv4Address, IPv6Address
from typing import TYPE_CHECKING

from cordon_config.model import Route

from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.http1 import (
    LAST_CHUNK,
    Body,
    FramingError,
    MessageEnd,
    RequestHead,
    ResponseHead,
    ResponseParser,
    Upgrade,
    encode_chunk,
    write_request_head,
    write_response_head,
)
from cordon_proxy.core.inject import (
    InjectionError,
    forward_request_headers,
    forward_response_headers,
    injected_header,
)

if TYPE_CHECKING:
    from cordon_proxy.core.session import Settings

__all__ = ["Forwarding", "Request", "host_value", "is_websocket"]

IPAddress = IPv4Address | IPv6Address


class Request:
    """The request in flight on this connection."""

    __slots__ = (
        "addresses",
        "body_done",
        "client_framing",
        "close_after",
        "head",
        "host_header",
        "path",
        "record",
        "response_started",
        "retried",
        "route",
        "upstream_host",
        "upstream_port",
        "upstream_tls",
    )

    def __init__(self, head: RequestHead, record: cmd.RequestRecord) -> None:
        self.head = head
        self.record = record
        self.route: Route | None = None
        self.path = "/"
        self.host_header = b""
        self.upstream_host = ""
        self.upstream_port = 443
        self.upstream_tls: str | None = None
        self.addresses: tuple[IPAddress, ...] = ()
        self.body_done = head.body == "none"
        self.response_started = False
        self.client_framing = "none"
        self.close_after = not head.keep_alive
        self.retried = False


class Forwarding:
    """Response-side handlers of :class:`~cordon_proxy.core.session.Session` (state lives on the session)."""

    settings: Settings
    mode: str
    phase: str
    _request: Request | None
    _head: RequestHead | None
    _response: ResponseParser | None
    _response_parser: ResponseParser | None
    _injected_for: tuple[Route, object, tuple[bytes, bytes]] | None
    _pending: deque[object]
    _leased: bool
    _injected: tuple[bytes, bytes] | None
    _last_injected: tuple[bytes, bytes] | None
    _response_keep_alive: bool
    _upstream_reused: bool

    if TYPE_CHECKING:

        def _pump(self, out: list[object]) -> None: ...
        def _fail(self, out: list[object], code: str, message: str) -> None: ...
        def _close(self, out: list[object], *, linger: bool = False) -> None: ...
        def _client_still_sending(self) -> bool: ...

    def _on_secret(self, event: ev.SecretReady, out: list[object]) -> None:
        req = self._request
        if self.phase != "secret" or req is None or req.route is None:
            return
        cached = self._injected_for
        if cached is not None and cached[0] is req.route and cached[1] is event.secret:
            injected = cached[2]  # the same secret object (a secret-cache hit) for the same route: same header
        else:
            try:
                injected = injected_header(req.route, event.secret)
            except InjectionError as exc:
                self._fail(out, "secret-unavailable", str(exc))
                return
            self._injected_for = (req.route, event.secret, injected)
        self._injected = injected
        self.phase = "connect"
        self._leased = True
        out.append(cmd.OpenUpstream(req.upstream_host, req.upstream_port, req.upstream_tls))

    def _on_upstream_connected(self, out: list[object]) -> None:
        req = self._request
        if self.phase != "connect" or req is None:
            return
        head = req.head
        injected = self._injected if req.route is not None else None
        self._last_injected = injected
        self._injected = None
        websocket = head.upgrade and req.route is not None
        headers = forward_request_headers(
            head.headers,
            host=req.host_header,
            body=head.body,
            content_length=head.content_length,
            route=req.route,
            injected=injected,
            keep=WEBSOCKET_KEEP if websocket else frozenset(),
            lowered=head.lowered,
        )
        if websocket:
            headers.insert(-1, (b"Connection", b"Upgrade"))
        parser = self._response_parser  # one per session, reset per exchange (no garbage cycle per request)
        if parser is None:
            parser = self._response_parser = ResponseParser(self.settings.max_head)
        else:
            parser.reset()
        parser.expect(head.method)
        self._response = parser
        self.phase = "forward"
        out.append(cmd.SendUpstream(write_request_head(head.method, req.path, headers)))
        self._pump(out)

    def _on_upstream_data(self, data: bytes, out: list[object]) -> None:
        req = self._request
        parser = self._response
        if req is None or parser is None or self.phase != "forward":
            return
        try:
            events = parser.feed(data)
        except FramingError as exc:
            self._upstream_broken(out, "bad-upstream-response", f"upstream {req.upstream_host}: {exc.reason}")
            return
        self._on_response_events(events, out)

    def _on_response_events(self, events: list[object], out: list[object]) -> None:
        req = self._request
        assert req is not None
        for item in events:
            if isinstance(item, ResponseHead):
                self._on_response_head(req, item, out)
            elif isinstance(item, Body):
                if req.client_framing == "chunked":
                    out.append(cmd.SendClient(encode_chunk(item.data)))
                elif item.data:
                    out.append(cmd.SendClient(item.data))
                req.record.bytes += len(item.data)
            elif isinstance(item, MessageEnd):
                if not req.response_started or req.record.status == 101:
                    continue  # end of an interim (1xx) response, or of the 101 before the Upgrade event
                if req.client_framing == "chunked":
                    out.append(cmd.SendClient(LAST_CHUNK))
                reusable = bool(self._response and self._response.reusable and self._response_keep_alive)
                self._leased = False
                out.append(cmd.ReleaseUpstream(reusable and req.body_done))
                self._response = None
                if req.body_done:
                    self._finish_request(out)
                else:
                    req.close_after = True
                    self._finish_request(out)
                return
            elif isinstance(item, Upgrade):
                if req.record.status != 101:
                    self._upstream_broken(
                        out, "bad-upstream-response", f"upstream {req.upstream_host}: unexpected upgrade"
                    )
                    return
                self._start_websocket(req, item.leftover, out)
                return

    def _on_response_head(self, req: Request, head: ResponseHead, out: list[object]) -> None:
        if head.status < 200:
            if head.status == 101:
                if not (req.head.upgrade and req.route is not None):
                    self._upstream_broken(
                        out, "bad-upstream-response", f"upstream {req.upstream_host}: unexpected 101"
                    )
                    return
                req.response_started = True
                req.record.status = 101
                headers = forward_response_headers(
                    head.headers, framing=None, keep=WEBSOCKET_KEEP, lowered=head.lowered
                )
                headers.insert(-1, (b"Connection", b"Upgrade"))
                out.append(cmd.SendClient(write_response_head(101, headers, version="1.1")))
                return
            headers = forward_response_headers(head.headers, framing=None, lowered=head.lowered)
            out.append(cmd.SendClient(write_response_head(head.status, headers, version="1.1")))
            return
        req.response_started = True
        req.record.status = head.status
        self._response_keep_alive = head.keep_alive
        client_http11 = req.head.version == "1.1"
        if head.body == "length":
            framing: tuple[bytes, bytes] | None = (b"Content-Length", str(head.content_length).encode())
            req.client_framing = "length"
        elif head.body in ("chunked", "close"):
            if client_http11:
                framing = (b"Transfer-Encoding", b"chunked")
                req.client_framing = "chunked"
            else:
                framing = None
                req.client_framing = "close"
                req.close_after = True
        else:
            req.client_framing = "none"
            framing = None
            original = head.values(b"content-length")
            if head.status not in (204,) and head.status >= 200:
                value = (
                    original[0] if original and (req.head.method == "HEAD" or head.status == 304) else b"0"
                )
                framing = (b"Content-Length", value)
        if not req.body_done:
            req.close_after = True
        headers = forward_response_headers(head.headers, framing=framing, lowered=head.lowered)
        if req.close_after:
            headers.append((b"Connection", b"close"))
        if head.status == 401 and req.route is not None:
            out.append(cmd.InvalidateSecret(req.route.name))
        out.append(cmd.SendClient(write_response_head(head.status, headers, version=req.head.version)))

    def _start_websocket(self, req: Request, upstream_leftover: bytes, out: list[object]) -> None:
        """After the upstream's 101: hand both connections to the edge to splice until either closes."""
        client_leftover = b""
        while self._pending:
            item = self._pending.popleft()
            if isinstance(item, Upgrade):
                client_leftover += item.leftover
        self._leased = False
        self._response = None
        self._request = None
        self.mode = "tunnel"
        self.phase = "idle"
        out.append(cmd.Splice(client_leftover, req.record, to_client=upstream_leftover, upstream=True))

    def _finish_request(self, out: list[object]) -> None:
        req = self._request
        assert req is not None
        out.append(cmd.LogRequest(req.record))
        linger = self._client_still_sending()
        self._request = None
        self._head = None
        self.phase = "idle"
        if req.close_after or not req.body_done:
            self._close(out, linger=linger)
            return
        self._pump(out)

    def _on_upstream_closed(self, out: list[object]) -> None:
        req = self._request
        parser = self._response
        if req is None or parser is None or self.phase != "forward":
            return
        if self._retry_on_fresh_connection(req, parser, out):
            return
        try:
            events = parser.feed_eof()
        except FramingError:
            self._upstream_broken(
                out,
                "upstream-failed",
                f"upstream {req.upstream_host}: connection closed before the response completed",
            )
            return
        if not events:
            self._upstream_broken(out, "upstream-failed", f"upstream {req.upstream_host}: connection closed")
            return
        self._response_keep_alive = False
        self._on_response_events(events, out)

    def _retry_on_fresh_connection(self, req: Request, parser: ResponseParser, out: list[object]) -> bool:
        """A pooled connection the upstream had closed: resend a bodyless idempotent request once, fresh.

        Only when not one byte of a response came back; POST and anything with a body are never retried.
        """
        if (
            not self._upstream_reused
            or req.retried
            or req.response_started
            or parser.started
            or req.head.method not in IDEMPOTENT
            or req.head.body != "none"
        ):
            return False
        req.retried = True
        self._response = None
        out.append(cmd.ReleaseUpstream(False))
        self.phase = "connect"
        if req.route is not None:
            self._injected = self._last_injected
        out.append(
            cmd.OpenUpstream(
                req.upstream_host, req.upstream_port, req.upstream_tls, req.addresses, fresh=True
            )
        )
        return True

    def _on_upstream_timeout(self, seconds: float, out: list[object]) -> None:
        req = self._request
        if req is None:
            return
        self._upstream_broken(
            out, "upstream-timeout", f"upstream {req.upstream_host} timed out after {seconds:g} s"
        )

    def _upstream_broken(self, out: list[object], code: str, message: str) -> None:
        """The upstream failed mid-exchange: answer with an error if nothing was sent yet, else abort."""
        req = self._request
        if self._leased:
            self._leased = False
            out.append(cmd.ReleaseUpstream(False))
        self._response = None
        if req is not None and req.response_started:
            req.record.error = code
            out.append(cmd.LogRequest(req.record))
            self._request = None
            self.mode = "closed"
            out.append(cmd.CloseClient(abort=True))
            return
        self._fail(out, code, message)

    def _on_client_closed(self, out: list[object]) -> None:
        req = self._request
        if self._leased:
            self._leased = False
            out.append(cmd.ReleaseUpstream(False))
        if req is not None:
            req.record.error = "client-closed"
            out.append(cmd.LogRequest(req.record))
            self._request = None
        self._close(out)


WEBSOCKET_KEEP = frozenset({b"upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


def is_websocket(head: RequestHead) -> bool:
    """A GET asking to upgrade to WebSocket (RFC 6455 §4.1)."""
    if head.method != "GET":
        return False
    return any(v.strip().lower() == b"websocket" for v in head.values(b"upgrade"))


def host_value(host: str, port: int, default: int) -> bytes:
    text = f"[{host}]" if ":" in host else host
    return (text if port == default else f"{text}:{port}").encode("ascii")
