"""The one canonical form of host names (cordon_config.hosts) and the one route lookup (model.route_for_host)."""

from __future__ import annotations

import pytest
from cordon_config.hosts import canonical_host, canonical_leaf_host, comparable_host
from cordon_config.model import HeaderAuth, Route, SecretRef, route_for_host

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
def test_route_for_host(host: str, port: int, expected: Route | None) -> None:
    assert route_for_host((R, P), host, port) == expected


@pytest.mark.parametrize(("text", "expected"), [
    ("API.Test.", "api.test"), ("bücher.test", "xn--bcher-kva.test"), ("a-b.c", "a-b.c"),
])
def test_canonical_host(text: str, expected: str) -> None:
    assert canonical_host(text) == expected


@pytest.mark.parametrize("text", ["", " a.test", "a..test", "-a.test", "127.0.0.1", "[::1]", "a.123", "a_b.test",
                                  "a" * 64 + ".test"])
def test_canonical_host_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_host(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("API.test.", "api.test"), ("a_b.test", "a_b.test"), ("[::1]", "::1"), ("0:0::1", "::1"), ("127.0.0.1", "127.0.0.1"),
])
def test_canonical_leaf_host(text: str, expected: str) -> None:
    assert canonical_leaf_host(text) == expected


@pytest.mark.parametrize("text", ["", "a..test", " a.test", "a b"])
def test_canonical_leaf_host_refuses(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_leaf_host(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("API.test.", "api.test"), ("LOCALHOST.", "localhost"), ("a..", "a.."), ("Not A Host.", "not a host"),
    ("127.0.0.1", "127.0.0.1"),
])
def test_comparable_host(text: str, expected: str) -> None:
    assert comparable_host(text) == expected
