"""The httptools wrapper and the head writer."""

from __future__ import annotations

import pytest
from cordon_proxy.core.http1 import (
    Body,
    FramingError,
    MessageEnd,
    RequestHead,
    RequestParser,
    ResponseHead,
    ResponseParser,
    Upgrade,
    encode_chunk,
    write_request_head,
    write_response_head,
)


def test_request_events_for_a_chunked_body_and_pipelined_next_request() -> None:
    p = RequestParser()
    events = p.feed(
        b"POST /a?b=1 HTTP/1.1\r\nHost: x.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n"
        b"GET /next HTTP/1.1\r\nHost: x.test\r\n\r\n"
    )
    head, body, end, head2, end2 = events
    assert isinstance(head, RequestHead)
    assert (head.method, head.target, head.version, head.body, head.keep_alive) == ("POST", "/a?b=1", "1.1", "chunked", True)
    assert head.headers == [(b"Host", b"x.test"), (b"Transfer-Encoding", b"chunked")]  # trailer dropped
    assert body == Body(b"abc") and end == MessageEnd()
    assert isinstance(head2, RequestHead) and head2.target == "/next" and head2.body == "none"
    assert end2 == MessageEnd()
    assert p.idle


def test_connect_stops_the_parser_and_returns_the_leftover() -> None:
    p = RequestParser()
    events = p.feed(b"CONNECT a.test:443 HTTP/1.1\r\nHost: a.test:443\r\n\r\n\x16\x03\x01")
    assert isinstance(events[0], RequestHead) and events[0].method == "CONNECT"
    assert events[-1] == Upgrade(b"\x16\x03\x01")


def test_http10_keep_alive_flag() -> None:
    (head, _) = RequestParser().feed(b"GET / HTTP/1.0\r\nHost: a\r\n\r\n")
    assert isinstance(head, RequestHead) and head.version == "1.0" and not head.keep_alive


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"POST / HTTP/1.0\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: upgrade\r\nContent-Length: 3\r\n\r\nabc", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 70000 + b"\r\n\r\n", 431),
    ],
)
def test_request_rejections(data: bytes, status: int) -> None:
    with pytest.raises(FramingError) as info:
        RequestParser().feed(data)
    assert info.value.status == status


def test_head_limit_applies_across_reads() -> None:
    p = RequestParser(max_head=1000)
    p.feed(b"GET / HTTP/1.1\r\nX: ")
    with pytest.raises(FramingError) as info:
        for _ in range(10):
            p.feed(b"a" * 200)
    assert info.value.status == 431


def test_response_framing_kinds() -> None:
    p = ResponseParser()
    p.expect("GET")
    (h, b, e) = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert isinstance(h, ResponseHead) and (h.status, h.body, h.content_length, h.keep_alive) == (200, "length", 2, True)
    assert (b, e) == (Body(b"ok"), MessageEnd())
    p = ResponseParser()  # one parser per request, as the session does
    (h, e) = p.feed(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n")
    assert isinstance(h, ResponseHead) and h.body == "none" and e == MessageEnd()
    p = ResponseParser()
    (h, b) = p.feed(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
    assert isinstance(h, ResponseHead) and h.body == "close" and not h.keep_alive
    assert p.feed_eof() == [MessageEnd()]


def test_response_rejections_are_502() -> None:
    for data in (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: " + b"y" * 70000 + b"\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n",
    ):
        p = ResponseParser()
        p.expect("GET")
        with pytest.raises(FramingError) as info:
            p.feed(data)
        assert info.value.status == 502


def test_response_cut_short_raises_on_eof() -> None:
    p = ResponseParser()
    p.expect("GET")
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(FramingError):
        p.feed_eof()


def test_head_response_ends_without_body() -> None:
    p = ResponseParser()
    p.expect("HEAD")
    (h, e) = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
    assert isinstance(h, ResponseHead) and h.body == "none" and e == MessageEnd()
    assert not p.reusable


def test_writer_produces_one_bytes_object_per_head() -> None:
    assert write_request_head("GET", "/x", [(b"Host", b"a.test"), (b"Via", b"1.1 cordon")]) == (
        b"GET /x HTTP/1.1\r\nHost: a.test\r\nVia: 1.1 cordon\r\n\r\n"
    )
    assert write_response_head(421, [(b"Content-Length", b"0")]) == (
        b"HTTP/1.1 421 Misdirected Request\r\nContent-Length: 0\r\n\r\n"
    )
    assert write_response_head(599, []) == b"HTTP/1.1 599 Unknown\r\n\r\n"
    assert encode_chunk(b"hello") == b"5\r\nhello\r\n" and encode_chunk(b"") == b""


@pytest.mark.parametrize(
    "extra",
    [b"JUNK\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nevil!", b"\x00\x01"],
)
def test_bytes_after_a_complete_response_are_dropped_and_the_connection_not_reused(extra: bytes) -> None:
    p = ResponseParser()
    p.expect("GET")
    events = p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra)
    assert [type(e).__name__ for e in events] == ["ResponseHead", "Body", "MessageEnd"]
    assert not p.reusable


def test_interim_then_final_response_in_one_read_is_fine() -> None:
    p = ResponseParser()
    p.expect("POST")
    events = p.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx")
    assert [type(e).__name__ for e in events] == ["ResponseHead", "MessageEnd", "ResponseHead", "Body", "MessageEnd"]
    assert p.reusable
