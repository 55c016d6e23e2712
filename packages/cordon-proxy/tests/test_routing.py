"""Authorities, host comparison and route lookup."""

from __future__ import annotations

import pytest
from cordon_proxy.core.routing import AuthorityError, parse_absolute, parse_authority, same_host


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
