"""Authorities, host comparison and route lookup."""

from __future__ import annotations

import pytest
from cordon_config.model import HeaderAuth, Route, SecretRef
from cordon_proxy.core.routing import AuthorityError, find_route, parse_absolute, parse_authority, same_host

R = Route("api", "api.test", HeaderAuth("x-api-key"), SecretRef("env", {}))
P = Route("ported", "ported.test", HeaderAuth("x-api-key"), SecretRef("env", {}), port=8443)


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("api.test", 443, R), ("API.TEST", 443, R), ("api.test.", 443, R), ("api.test", 8080, R),
        ("api.test.evil", 443, None), ("evil.api.test", 443, None), ("127.0.0.1", 443, None),
        ("ported.test", 8443, P), ("ported.test", 443, None), ("2130706433", 443, None), ("::1", 443, None),
    ],
)
def test_find_route(host: str, port: int, expected: Route | None) -> None:
    assert find_route((R, P), host, port) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a.test", ("a.test", None)), ("a.test:8443", ("a.test", 8443)), ("[::1]:443", ("::1", 443)), ("[::1]", ("::1", None))],
)
def test_parse_authority(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_authority(text) == expected


@pytest.mark.parametrize("text", ["", "a.test:", "a.test:0", "a.test:65536", "a.test:x", "u@a.test", "a b", "[::1"])
def test_parse_authority_rejects(text: str) -> None:
    with pytest.raises(AuthorityError):
        parse_authority(text)


def test_parse_absolute() -> None:
    assert parse_absolute("https://API.test:8443/v1/x?y#frag") == ("https", "API.test", 8443, "/v1/x?y")
    assert parse_absolute("http://a.test?q=1") == ("http", "a.test", None, "/?q=1")
    for bad in ("ftp://a.test/", "//a.test/", "http://user:pw@a.test/"):
        with pytest.raises(AuthorityError):
            parse_absolute(bad)


def test_same_host() -> None:
    assert same_host("API.Test.", "api.test")
    assert not same_host("api.test", "api.test.evil")
