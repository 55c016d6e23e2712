"""One request and its response on the upstream side (sans-IO): :class:`Exchange`.

An :class:`Exchange` knows the framing of one forwarded request in both directions: the re-serialised head
with the injected header, the request body to the upstream, the response head and body back to the client
(re-framed for the client), 1xx interim responses, 101 for a WebSocket, and whether the upstream connection
can be reused. It appends the commands that move bytes to ``out`` and tells the
:class:`~cordon_proxy.core.session.Session` how the response went (:class:`Outcome`); the session owns every
state transition, the upstream lease and the log record's fate.

Every response body byte passes through :meth:`Exchange._body_to_client` (the one place for a transform of
routed response bodies): with ``patterns`` set (a routed exchange whose route scrubs responses), the
response head's values and the body are scrubbed of the key (:mod:`scrub`), and the ``Accept-Encoding``
sent upstream lists only codings cordon can decode.
"""

from __future__ import annotations

from enum import Enum
from ipaddress import IPv4Address, IPv6Address

from cordon_config.model import Route

from cordon_proxy.core import commands as cmd
from cordon_proxy.core.http1 import (
    LAST_CHUNK,
    Body,
    FramingError,
    MessageEnd,
    RequestHead,
    ResponseEvent,
    ResponseHead,
    ResponseParser,
    Upgrade,
    encode_chunk,
    write_request_head,
    write_response_head,
)
from cordon_proxy.core.inject import forward_request_headers, forward_response_headers
from cordon_proxy.core.scrub import (
    KeyForms,
    Masker,
    Scrubber,
    content_codings,
    narrow_accept_encoding,
    scrub_headers,
)

__all__ = ["IDEMPOTENT", "Exchange", "Outcome", "host_value", "is_websocket"]

IPAddress = IPv4Address | IPv6Address
WEBSOCKET_KEEP = frozenset({b"upgrade"})
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS"})


class Outcome(Enum):
    """How a piece of the response left the exchange."""

    MORE = "more"  # keep reading the upstream
    DONE = "done"  # the response is complete (``reusable`` says whether the connection can be pooled)
    UPGRADE = "upgrade"  # the upstream switched to WebSocket (``leftover``: its bytes already read)
    BROKEN = "broken"  # the upstream broke the exchange (``error``: X-Cordon-Error code and message)


class Exchange:
    """The request in flight on a connection and its response (see the module doc)."""

    __slots__ = (
        "addresses",
        "body_done",
        "client_framing",
        "close_after",
        "error",
        "head",
        "host_header",
        "injected",
        "keep_alive",
        "leased",
        "leftover",
        "path",
        "patterns",
        "record",
        "response",
        "response_started",
        "retried",
        "reusable",
        "reused",
        "route",
        "scrubber",
        "upstream_host",
        "upstream_port",
        "upstream_tls",
    )

    def __init__(self, head: RequestHead, record: cmd.RequestRecord, path: str) -> None:
        self.head = head
        self.record = record
        self.path = path
        self.route: Route | None = None  # set: the route's secret is injected
        self.host_header = b""
        self.upstream_host = ""
        self.upstream_port = 443
        self.upstream_tls: str | None = None  # the name TLS is verified for (routed HTTPS), else None
        self.addresses: tuple[IPAddress, ...] = ()  # SSRF-checked addresses (unrouted), else resolved by the edge
        self.injected: tuple[bytes, bytes] | None = None  # the header carrying the secret (routed only)
        self.body_done = head.body == "none"
        self.leased = False  # the session holds an upstream connection for this exchange
        self.reused = False  # that connection came from the idle pool
        self.retried = False
        self.response: ResponseParser | None = None
        self.response_started = False  # a final (or 101) response head was sent to the client
        self.keep_alive = False  # the upstream's final response head allows keeping the connection
        self.client_framing = "none"  # none | length | chunked | close: how the body goes to the client
        self.close_after = not head.keep_alive
        self.reusable = False
        self.error: tuple[str, str] = ("", "")
        self.leftover = b""
        self.patterns: KeyForms | None = None  # the forms of the key to scrub from the response (None: no scrub)
        self.scrubber: Masker | Scrubber | None = None  # the response body's (a Masker unless compressed)

    # -- to the upstream -------------------------------------------------------------------------------
    def open_command(self, *, fresh: bool = False) -> cmd.OpenUpstream:
        """The command that leases an upstream connection for this exchange."""
        return cmd.OpenUpstream(self.upstream_host, self.upstream_port, self.upstream_tls, self.addresses, fresh=fresh)

    def request_head(self, parser: ResponseParser, reused: bool) -> bytes:
        """The head sent upstream (client credentials stripped, the secret injected for a route); from here on
        ``parser`` (reset by the caller) reads this exchange's response."""
        head = self.head
        route = self.route
        websocket = head.upgrade and route is not None
        headers = forward_request_headers(
            head.headers,
            host=self.host_header,
            body=head.body,
            content_length=head.content_length,
            route=route,
            injected=self.injected if route is not None else None,
            keep=WEBSOCKET_KEEP if websocket else frozenset(),
            lowered=head.lowered,
        )
        if websocket:
            headers.insert(-1, (b"Connection", b"Upgrade"))
        lowered = head.lowered
        if self.patterns is not None and lowered is not None and b"accept-encoding" in lowered:
            values = tuple(head.values(b"accept-encoding"))
            narrowed = narrow_accept_encoding(values)
            if values != (narrowed,):  # the usual gzip/deflate/br/zstd lists are left as they are
                # the forwarded list holds the client's own pairs: drop those by identity, add the narrowed one
                drop = {id(pair) for pair, name in zip(head.headers, lowered, strict=True) if name == b"accept-encoding"}
                headers = [pair for pair in headers if id(pair) not in drop]
                headers.insert(-1, (b"Accept-Encoding", narrowed))
        parser.expect(head.method)
        self.response = parser
        self.leased = True
        self.reused = reused
        return write_request_head(head.method, self.path, headers)

    def body_to_upstream(self, data: bytes, out: list[cmd.Command]) -> None:
        """A piece of the request body (chunked again when the client sent chunked)."""
        self.record.bytes_up += len(data)
        if self.head.body == "chunked":
            data = encode_chunk(data)
        if data:
            out.append(cmd.SendUpstream(data))

    def request_end(self, out: list[cmd.Command]) -> None:
        """The client finished the request body."""
        self.body_done = True
        if self.head.body == "chunked":
            out.append(cmd.SendUpstream(LAST_CHUNK))

    def can_retry(self) -> bool:
        """A pooled connection the upstream had closed: resend on a fresh one, once, only a bodyless idempotent
        request that saw not one byte of a response."""
        parser = self.response
        return (
            self.reused
            and not self.retried
            and not self.response_started
            and (parser is None or not parser.started)
            and self.head.method in IDEMPOTENT
            and self.head.body == "none"
        )

    # -- from the upstream -----------------------------------------------------------------------------
    def upstream_data(self, data: bytes, out: list[cmd.Command]) -> Outcome:
        """Bytes from the upstream."""
        parser = self.response
        assert parser is not None
        try:
            events = parser.feed(data)
        except FramingError as exc:
            return self._broken("bad-upstream-response", f"upstream {self.upstream_host}: {exc.reason}")
        return self._response_events(events, out)

    def upstream_eof(self, out: list[cmd.Command]) -> Outcome:
        """The upstream closed the connection."""
        parser = self.response
        assert parser is not None
        try:
            events = parser.feed_eof()
        except FramingError:
            return self._broken(
                "upstream-failed", f"upstream {self.upstream_host}: connection closed before the response completed"
            )
        if not events:
            return self._broken("upstream-failed", f"upstream {self.upstream_host}: connection closed")
        self.keep_alive = False
        return self._response_events(events, out)

    def _broken(self, code: str, message: str) -> Outcome:
        self.error = (code, message)
        return Outcome.BROKEN

    def _response_events(self, events: list[ResponseEvent], out: list[cmd.Command]) -> Outcome:
        record = self.record
        for item in events:
            if type(item) is Body:
                if not self._body_to_client(item.data, out):
                    return self._cut()
            elif type(item) is ResponseHead:
                if not self._response_head(item, out):
                    return Outcome.BROKEN
            elif type(item) is MessageEnd:
                if not self.response_started or record.status == 101:
                    continue  # end of an interim (1xx) response, or of the 101 before the Upgrade event
                scrubber = self.scrubber
                if scrubber is not None:
                    rest = scrubber.finish()
                    if scrubber.cut:
                        return self._cut()
                    self._send_body(rest, out)
                    record.scrubbed += scrubber.count
                    if scrubber.count:
                        record.decision = "scrubbed"
                if self.client_framing == "chunked":
                    out.append(cmd.SendClient(LAST_CHUNK))
                parser = self.response
                self.reusable = bool(parser is not None and parser.reusable and self.keep_alive)
                self.response = None
                return Outcome.DONE
            else:
                assert type(item) is Upgrade
                if record.status != 101:
                    return self._broken("bad-upstream-response", f"upstream {self.upstream_host}: unexpected upgrade")
                self.leftover = item.leftover
                self.response = None
                return Outcome.UPGRADE
        return Outcome.MORE

    def _body_to_client(self, data: bytes, out: list[cmd.Command]) -> bool:
        """Every response body byte passes here: scrubbed of the key (some bytes may wait for the next piece),
        re-framed for the client. False when the response must be cut (the key in a compressed body)."""
        self.record.bytes += len(data)
        scrubber = self.scrubber
        if scrubber is not None:
            data = scrubber.feed(data)
            if scrubber.cut:
                return False
        if self.client_framing == "chunked":
            if data:
                out.append(cmd.SendClient(encode_chunk(data)))
        elif data:
            out.append(cmd.SendClient(data))
        return True

    def _send_body(self, data: bytes, out: list[cmd.Command]) -> None:
        """The last bytes a scrubber held back."""
        if data:
            out.append(cmd.SendClient(encode_chunk(data) if self.client_framing == "chunked" else data))

    def _cut(self) -> Outcome:
        """The key is in a body that cannot be masked in place: stop the response (the client's connection is
        reset after what was sent)."""
        scrubber = self.scrubber
        assert scrubber is not None
        self.record.decision = "scrubbed"
        self.record.scrubbed += scrubber.count
        return self._broken("key-in-response", f"response of {self.upstream_host} cut: {scrubber.reason}")

    def _response_head(self, head: ResponseHead, out: list[cmd.Command]) -> bool:
        """Send the response head to the client, framed for it; False when the upstream broke the exchange."""
        status = head.status
        if status < 200:
            if status == 101:
                if not (self.head.upgrade and self.route is not None):
                    self._broken("bad-upstream-response", f"upstream {self.upstream_host}: unexpected 101")
                    return False
                self.response_started = True
                self.record.status = 101
                headers = forward_response_headers(head.headers, framing=None, keep=WEBSOCKET_KEEP, lowered=head.lowered)
                headers.insert(-1, (b"Connection", b"Upgrade"))
                self._scrub_head(headers)
                out.append(cmd.SendClient(write_response_head(101, headers, version="1.1")))
                return True
            headers = forward_response_headers(head.headers, framing=None, lowered=head.lowered)
            self._scrub_head(headers)
            out.append(cmd.SendClient(write_response_head(status, headers, version="1.1")))
            return True
        if self.patterns is not None and head.body != "none":
            codings = content_codings(head.values(b"content-encoding"))
            if not codings:
                self.scrubber = Masker(self.patterns)
            elif (unknown := (scrubber := Scrubber(self.patterns)).start(codings)) is None:
                self.scrubber = scrubber
            else:
                self._broken("unscannable-response", f"upstream {self.upstream_host} answered in the content "
                             f"coding {unknown[:40]!r}, which cordon cannot scan for the key")
                return False
        self.response_started = True
        self.record.status = status
        self.keep_alive = head.keep_alive
        framing: tuple[bytes, bytes] | None
        if head.body == "length":
            framing = (b"Content-Length", str(head.content_length).encode())
            self.client_framing = "length"
        elif head.body in ("chunked", "close"):
            if self.head.version == "1.1":
                framing = (b"Transfer-Encoding", b"chunked")
                self.client_framing = "chunked"
            else:
                framing = None
                self.client_framing = "close"
                self.close_after = True
        else:
            self.client_framing = "none"
            framing = None
            if status != 204:
                original = head.values(b"content-length")
                keep = bool(original) and (self.head.method == "HEAD" or status == 304)
                framing = (b"Content-Length", original[0] if keep else b"0")
        if not self.body_done:
            self.close_after = True
        headers = forward_response_headers(head.headers, framing=framing, lowered=head.lowered)
        if self.close_after:
            headers.append((b"Connection", b"close"))
        self._scrub_head(headers)
        if status == 401 and self.route is not None:
            out.append(cmd.InvalidateSecret(self.route.name))
        out.append(cmd.SendClient(write_response_head(status, headers, version=self.head.version)))
        return True


    def _scrub_head(self, headers: list[tuple[bytes, bytes]]) -> None:
        """Mask the key in the response head's values (routed exchanges that scrub)."""
        if self.patterns is not None:
            found = scrub_headers(headers, self.patterns)
            if found:
                self.record.scrubbed += found
                self.record.decision = "scrubbed"


def is_websocket(head: RequestHead) -> bool:
    """A GET asking to upgrade to WebSocket (RFC 6455 §4.1)."""
    if head.method != "GET":
        return False
    return any(v.strip().lower() == b"websocket" for v in head.values(b"upgrade"))


def host_value(host: str, port: int, default: int) -> bytes:
    """The Host header value for ``host:port`` (the port left out when it is the scheme's ``default``)."""
    text = f"[{host}]" if ":" in host else host
    return (text if port == default else f"{text}:{port}").encode("ascii")
