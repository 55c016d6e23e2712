"""Header hygiene and the injected header (table tests)."""

from __future__ import annotations

import pytest
from cordon_config.model import BasicAuth, HeaderAuth, Route, SecretRef
from cordon_proxy.core.inject import (
    InjectionError,
    connection_tokens,
    forward_request_headers,
    forward_response_headers,
    injected_header,
)


class S:
    def __init__(self, v: str) -> None:
        self.v = v

    def reveal(self) -> str:
        return self.v


def route(auth: object) -> Route:
    return Route("r", "r.test", auth, SecretRef("env", {}))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        (HeaderAuth("Authorization", "Bearer"), (b"Authorization", b"Bearer tok")),
        (HeaderAuth("x-api-key"), (b"x-api-key", b"tok")),
        (HeaderAuth("X-Goog-Api-Key", None), (b"X-Goog-Api-Key", b"tok")),
        (BasicAuth("git"), (b"Authorization", b"Basic Z2l0OnRvaw==")),
    ],
)
def test_injected_header(auth: object, expected: tuple[bytes, bytes]) -> None:
    assert injected_header(route(auth), S("tok")) == expected


@pytest.mark.parametrize("value", ["", "sk1\r\nX-Evil: 1", "sk2\n", "sk3\x00b", " sk4", "sk5 ", "skä6"])
def test_unusable_secret_values(value: str) -> None:
    with pytest.raises(InjectionError) as info:
        injected_header(route(HeaderAuth("x-api-key")), S(value))
    assert 'route "r"' in str(info.value)
    if value.strip():
        assert value not in str(info.value)


def test_connection_tokens_are_collected_from_every_connection_header() -> None:
    headers = [(b"Connection", b"close, X-A"), (b"connection", b" x-b ,,")]
    assert connection_tokens(headers) == {b"close", b"x-a", b"x-b"}


def test_request_headers_order_host_first_and_exactly_one_injection() -> None:
    headers = [
        (b"Host", b"evil"), (b"Authorization", b"a"), (b"x-api-key", b"b"), (b"X-API-KEY", b"c"),
        (b"Connection", b"x-api-key, authorization"), (b"Content-Length", b"5"), (b"Accept", b"*/*"),
        (b"Proxy-Authorization", b"Basic x"), (b"Proxy-Connection", b"keep-alive"),
    ]
    out = forward_request_headers(
        headers, host=b"r.test", body="length", content_length=5, route=route(HeaderAuth("x-api-key")),
        injected=(b"x-api-key", b"real"),
    )
    assert out == [(b"Host", b"r.test"), (b"Accept", b"*/*"), (b"Content-Length", b"5"), (b"x-api-key", b"real"),
                   (b"Via", b"1.1 cordon")]


def test_unrouted_request_keeps_the_clients_authorization() -> None:
    out = forward_request_headers([(b"Authorization", b"mine")], host=b"h", body="none", content_length=None)
    assert out == [(b"Host", b"h"), (b"Authorization", b"mine"), (b"Via", b"1.1 cordon")]


def test_response_headers_drop_hop_by_hop_and_reset_framing() -> None:
    headers = [(b"Connection", b"keep-alive, X-Drop"), (b"X-Drop", b"1"), (b"Keep-Alive", b"t=5"),
               (b"Transfer-Encoding", b"chunked"), (b"Content-Type", b"text/event-stream"), (b"Upgrade", b"h2")]
    out = forward_response_headers(headers, framing=(b"Transfer-Encoding", b"chunked"))
    assert out == [(b"Content-Type", b"text/event-stream"), (b"Transfer-Encoding", b"chunked"), (b"Via", b"1.1 cordon")]
