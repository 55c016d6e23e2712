"""HTTP/1.1 framing: httptools (llhttp, strict mode) wrapped into cordon's own events, and a head writer.

The parsers turn bytes into :class:`RequestHead` / :class:`ResponseHead`, :class:`Body`, :class:`MessageEnd`
and :class:`Upgrade` events, and raise :class:`FramingError` (status + reason) for anything ambiguous.
llhttp already refuses Content-Length with Transfer-Encoding, duplicate Content-Length, obs-fold, bare LF,
NUL and bare CR in values and bad chunk sizes; on top of it this module refuses Transfer-Encoding on
HTTP/1.0, any Transfer-Encoding other than exactly ``chunked``, duplicate ``Host`` and a header block over
the limit (431), whether it arrives in one read or dribbles in.

The writer never copies raw header bytes through: every head cordon sends is re-serialised from the parsed
list into one ``bytes`` object (one write, one TLS record).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import httptools

__all__ = [
    "LAST_CHUNK",
    "Body",
    "FramingError",
    "Headers",
    "MessageEnd",
    "RequestEvent",
    "RequestHead",
    "RequestParser",
    "ResponseEvent",
    "ResponseHead",
    "ResponseParser",
    "Upgrade",
    "encode_chunk",
    "header_values",
    "reason_phrase",
    "write_request_head",
    "write_response_head",
]

Headers = list[tuple[bytes, bytes]]

MAX_HEADERS = 100
LAST_CHUNK = b"0\r\n\r\n"


@dataclass(slots=True)
class RequestHead:
    """A parsed request line and header block.

    ``body`` is ``"none"``, ``"length"`` (``content_length`` bytes) or ``"chunked"``.
    """

    method: str
    target: str
    version: str
    headers: Headers
    keep_alive: bool
    body: str
    content_length: int | None = None
    upgrade: bool = False
    lowered: list[bytes] | None = None  # header names lower-cased, parallel to ``headers``

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower-case bytes), in order."""
        return _values(self.headers, self.lowered, name)


@dataclass(slots=True)
class ResponseHead:
    """A parsed status line and header block; ``body`` is none | length | chunked | close."""

    status: int
    version: str
    headers: Headers
    keep_alive: bool
    body: str
    content_length: int | None = None
    lowered: list[bytes] | None = None

    def values(self, name: bytes) -> list[bytes]:
        """Every value of header ``name`` (lower-case bytes), in order."""
        return _values(self.headers, self.lowered, name)


@dataclass(slots=True)
class Body:
    """A piece of a message body (chunked framing already removed)."""

    data: bytes


@dataclass(slots=True)
class MessageEnd:
    """The current message is complete."""


@dataclass(slots=True)
class Upgrade:
    """The parser stopped after a CONNECT or Upgrade head; ``leftover`` are the bytes that followed it."""

    leftover: bytes


RequestEvent = RequestHead | Body | MessageEnd | Upgrade
"""What :meth:`RequestParser.feed` returns, in order."""
ResponseEvent = ResponseHead | Body | MessageEnd | Upgrade
"""What :meth:`ResponseParser.feed` returns, in order."""


class FramingError(Exception):
    """The peer sent a message cordon will not forward; ``status`` is the answer (400, 431, 502)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class _StopParsing(Exception):
    """Raised from a callback to end parsing of the current feed (HEAD responses)."""


def header_values(headers: Headers, name: bytes) -> list[bytes]:
    """Every value of header ``name`` (lower-case bytes), in order."""
    return [v for n, v in headers if n.lower() == name]


def _values(headers: Headers, lowered: list[bytes] | None, name: bytes) -> list[bytes]:
    if lowered is None:
        return header_values(headers, name)
    if name not in lowered:
        return []
    return [headers[i][1] for i, n in enumerate(lowered) if n == name]


def _check_framing(
    headers: Headers, lowered: list[bytes], version: str, *, status_on_error: int
) -> tuple[str, int | None]:
    """Framing from Transfer-Encoding / Content-Length: ("chunked"|"length"|"unset", length)."""
    te = _values(headers, lowered, b"transfer-encoding")
    if te:
        if version == "1.0":
            raise FramingError(status_on_error, "Transfer-Encoding in an HTTP/1.0 message")
        if len(te) != 1 or te[0].strip().lower() != b"chunked":
            raise FramingError(status_on_error, "Transfer-Encoding other than exactly 'chunked'")
        return "chunked", None
    cl = _values(headers, lowered, b"content-length")
    if cl:
        if len(cl) != 1 or not cl[0].isdigit() or len(cl[0]) > 18:
            raise FramingError(status_on_error, "invalid Content-Length")
        return "length", int(cl[0])
    return "unset", None


class _HeadCounter:
    """Shared head-size accounting for both parsers."""

    def __init__(self, max_head: int, status: int) -> None:
        self.max_head = max_head
        self.status = status
        self.size = 0
        self.count = 0

    def reset(self) -> None:
        self.size = 0
        self.count = 0

    def add(self, n: int, *, header: bool = False) -> None:
        self.size += n
        if header:
            self.count += 1
            if self.count > MAX_HEADERS:
                raise FramingError(self.status, "too many header fields")
        if self.size > self.max_head:
            raise FramingError(self.status, "header block too large")


class RequestParser:
    """Incremental request parser: ``feed(data) -> events``; raises :class:`FramingError`."""

    def __init__(self, max_head: int = 65536) -> None:
        self._limit = _HeadCounter(max_head, 431)
        self._events: list[RequestEvent] = []
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._headers: Headers = []
        self._in_head = False  # a message has begun and its head is not complete
        self._in_body = False
        self._pending = 0  # bytes fed while the current head was incomplete
        self._trailer_size = 0

    # -- httptools callbacks ------------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = []
        self._limit.reset()
        self._in_head = True
        self._trailer_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._limit.add(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:  # a trailer field of a chunked body: counted, then dropped
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self._limit.max_head:
                raise FramingError(431, "trailer block too large")
            return
        limit = self._limit
        limit.size += len(name) + len(value) + 4
        self._headers.append((name, value))
        if limit.size > limit.max_head or len(self._headers) > MAX_HEADERS:
            raise FramingError(431, "header block too large" if limit.size > limit.max_head else "too many header fields")

    def on_headers_complete(self) -> None:
        parser = self._parser
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            raise FramingError(400, f"unsupported HTTP version {version}")
        method = parser.get_method().decode("ascii")
        headers = self._headers
        lowered = [n.lower() for n, _ in headers]
        if lowered.count(b"host") > 1:
            raise FramingError(400, "more than one Host header")
        kind, length = _check_framing(headers, lowered, version, status_on_error=400)
        body = "none" if kind == "unset" or (kind == "length" and length == 0) else kind
        upgrade = bool(parser.should_upgrade())
        if upgrade and method != "CONNECT" and body != "none":
            raise FramingError(400, "Upgrade request with a body")
        try:
            target = self._url.decode("ascii")
        except UnicodeDecodeError:
            raise FramingError(400, "non-ASCII request target") from None
        head = RequestHead(
            method, target, version, headers, bool(parser.should_keep_alive()), body, length, upgrade, lowered
        )
        self._events.append(head)
        self._in_head = False
        self._in_body = True
        self._pending = 0

    def on_body(self, data: bytes) -> None:
        self._events.append(Body(data))

    def on_message_complete(self) -> None:
        self._in_body = False
        self._events.append(MessageEnd())

    # -- public -------------------------------------------------------------------------------------
    def feed(self, data: bytes) -> list[RequestEvent]:
        """Parse ``data``; return the events it completed."""
        events: list[RequestEvent] = []
        self._events = events
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            events.append(Upgrade(data[offset:]))
            self._reset()
            return events
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, FramingError):
                raise cause from None
            raise FramingError(400, "malformed request") from None
        except httptools.HttpParserError as exc:
            raise FramingError(400, _parser_reason(exc)) from None
        if self._in_head:
            self._pending += len(data)
            if self._pending > self._limit.max_head:
                raise FramingError(431, "header block too large")
        return events

    @property
    def idle(self) -> bool:
        """True between messages (nothing of a next message received yet)."""
        return not self._in_head and not self._in_body

    @property
    def in_head(self) -> bool:
        """True while a message has begun and its head is not complete."""
        return self._in_head


class ResponseParser:
    """Incremental response parser for one upstream connection; call :meth:`expect` before each request."""

    def __init__(self, max_head: int = 65536) -> None:
        self._limit = _HeadCounter(max_head, 502)
        self._events: list[ResponseEvent] = []
        self._head_request = False
        self._reset()

    def _reset(self) -> None:
        self._parser = httptools.HttpResponseParser(self)
        self._headers: Headers = []
        self._in_head = False
        self._in_body = False
        self._body_kind = "none"
        self._pending = 0
        self._trailer_size = 0
        self._started = False
        self._final_done = False  # the final (non-1xx) response of the current request is complete
        self._status = 0
        self._clean_keep_alive = False  # the last final response ended normally and llhttp kept the stream open
        self.reusable = True

    def reset(self) -> None:
        """Start over for a new exchange (possibly on another connection); the object is reused.

        Reusing one parser per session matters: every new parser is a reference cycle with its llhttp
        parser (which holds bound callbacks), freed only by the cyclic garbage collector.
        """
        if self._final_done and self._clean_keep_alive and self.reusable and not (self._in_head or self._in_body):
            # llhttp stands between two messages of a keep-alive stream, exactly as a fresh parser would:
            # keep it and clear only this object's per-exchange state (a new llhttp parser costs microseconds)
            self._headers = []
            self._body_kind = "none"
            self._pending = 0
            self._trailer_size = 0
            self._started = False
            self._final_done = False
            self._status = 0
            self._clean_keep_alive = False
        else:
            self._reset()
        self._events = []

    def expect(self, method: str) -> None:
        """The next response answers a request with this method (HEAD responses carry no body)."""
        self._head_request = method == "HEAD"

    @property
    def started(self) -> bool:
        """True once any byte of a response was parsed."""
        return self._started

    def on_message_begin(self) -> None:
        if self._final_done:
            # bytes after the complete response (a second response, junk): never forwarded, never reused
            self.reusable = False
            raise _StopParsing
        self._headers = []
        self._limit.reset()
        self._in_head = True
        self._trailer_size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._in_body:
            self._trailer_size += len(name) + len(value) + 4
            if self._trailer_size > self._limit.max_head:
                raise FramingError(502, "upstream trailer block too large")
            return
        limit = self._limit
        limit.size += len(name) + len(value) + 4
        self._headers.append((name, value))
        if limit.size > limit.max_head or len(self._headers) > MAX_HEADERS:
            raise FramingError(502, "upstream header block too large")

    def on_headers_complete(self) -> None:
        parser = self._parser
        status = self._status = parser.get_status_code()
        version = parser.get_http_version()
        headers = self._headers
        lowered = [n.lower() for n, _ in headers]
        kind, length = _check_framing(headers, lowered, version, status_on_error=502)
        if status < 200 or status in (204, 304) or self._head_request:
            body = "none"
        elif kind == "unset":
            body = "close"
        elif kind == "length" and length == 0:
            body = "none"
        else:
            body = kind
        keep_alive = bool(parser.should_keep_alive()) and body != "close"
        self._clean_keep_alive = keep_alive and status >= 200
        self._events.append(ResponseHead(status, version, headers, keep_alive, body, length, lowered))
        self._in_head = False
        self._pending = 0
        if self._head_request and status >= 200:
            # llhttp cannot be told about HEAD: finish the message here and start a fresh parser.
            self._events.append(MessageEnd())
            self._final_done = True
            self.reusable = False
            raise _StopParsing
        self._in_body = True
        self._body_kind = body

    def on_body(self, data: bytes) -> None:
        self._events.append(Body(data))

    def on_message_complete(self) -> None:
        self._in_body = False
        self._events.append(MessageEnd())
        if self._status >= 200:
            self._final_done = True

    def feed(self, data: bytes) -> list[ResponseEvent]:
        """Parse ``data`` from the upstream; return the events it completed."""
        events: list[ResponseEvent] = []
        self._events = events
        if data:
            self._started = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            events.append(Upgrade(data[exc.args[0] :]))
            self._reset()
            self.reusable = False
            return events
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _StopParsing):
                done = self._final_done
                self._reset()
                self._final_done = done
                self.reusable = False
                return events
            if isinstance(cause, FramingError):
                raise cause from None
            raise FramingError(502, "invalid response from upstream") from None
        except httptools.HttpParserError as exc:
            if self._final_done:  # junk after a complete response: keep the response, drop the connection
                self.reusable = False
                return events
            raise FramingError(502, "invalid response from upstream: " + _parser_reason(exc)) from None
        if self._in_head:
            self._pending += len(data)
            if self._pending > self._limit.max_head:
                raise FramingError(502, "upstream header block too large")
        return events

    def feed_eof(self) -> list[ResponseEvent]:
        """The upstream closed: end a read-until-close body, or raise if a message was cut short."""
        if self._in_body and self._body_kind == "close":
            self._in_body = False
            return [MessageEnd()]
        if self._in_head or self._in_body:
            raise FramingError(502, "upstream closed the connection mid-response")
        return []


def _parser_reason(exc: Exception) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace("`", "'")[:120]


# -- writer -----------------------------------------------------------------------------------------


_PHRASES = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase for ``status`` (``b"Unknown"`` when there is none)."""
    return _PHRASES.get(status, b"Unknown")


def write_request_head(method: str, target: str, headers: Headers) -> bytes:
    """Serialise an HTTP/1.1 request head into one bytes object."""
    lines = [f"{method} {target} HTTP/1.1".encode("ascii")]
    lines += [b": ".join(pair) for pair in headers]
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def write_response_head(status: int, headers: Headers, *, version: str = "1.1") -> bytes:
    """Serialise a response head into one bytes object."""
    lines = [b"HTTP/%s %d %s" % (version.encode("ascii"), status, reason_phrase(status))]
    lines += [b": ".join(pair) for pair in headers]
    lines.append(b"\r\n")
    return b"\r\n".join(lines)


def encode_chunk(data: bytes) -> bytes:
    """One chunk of a chunked body (empty data gives nothing: the last chunk is :data:`LAST_CHUNK`)."""
    if not data:
        return b""
    return b"%x\r\n%s\r\n" % (len(data), data)
