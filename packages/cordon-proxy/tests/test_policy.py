"""SSRF policy and CONNECT-target parsing, as pure functions (no socket is ever opened here)."""

from __future__ import annotations

import ipaddress
import socket
from ipaddress import IPv4Address, IPv4Network, IPv6Address

import pytest
from cordon_proxy.core.policy import (
    METADATA_ADDRESSES,
    TargetError,
    blocked_name,
    blocked_reason,
    embedded_ipv4,
    inet_aton,
    literal_address,
    parse_connect_target,
    self_connect,
)
from hypothesis import given, settings
from hypothesis import strategies as st

LOOPBACK = "loopback address"
PRIVATE = "private address (RFC 1918)"
LINK_LOCAL = "link-local address"
METADATA = "cloud metadata address"
CGNAT = "carrier-grade NAT address"
UNIQUE_LOCAL = "unique-local address"
MULTICAST = "multicast address"
UNSPECIFIED = "unspecified address"
RESERVED = "reserved address"

# Every blocked IPv4 range with the reason cordon gives; first, last and a middle address are checked.
V4_RANGES = [
    ("0.0.0.0/8", UNSPECIFIED),
    ("10.0.0.0/8", PRIVATE),
    ("100.64.0.0/10", CGNAT),
    ("127.0.0.0/8", LOOPBACK),
    ("169.254.0.0/16", LINK_LOCAL),
    ("172.16.0.0/12", PRIVATE),
    ("192.0.0.0/24", RESERVED),
    ("192.0.2.0/24", "documentation address"),
    ("192.88.99.0/24", RESERVED),
    ("192.168.0.0/16", PRIVATE),
    ("198.18.0.0/15", "benchmarking address"),
    ("198.51.100.0/24", "documentation address"),
    ("203.0.113.0/24", "documentation address"),
    ("224.0.0.0/4", MULTICAST),
    ("240.0.0.0/5", RESERVED),
    ("248.0.0.0/6", RESERVED),
    ("255.255.255.254/32", RESERVED),
    ("255.255.255.255/32", "broadcast address"),
]

V6_RANGES = [
    ("::/128", UNSPECIFIED),
    ("::1/128", LOOPBACK),
    ("100::/64", RESERVED),
    ("100:0:0:1::/64", RESERVED),
    ("2001:2::/48", "benchmarking address"),
    ("2001:db8::/32", "documentation address"),
    ("3fff::/20", "documentation address"),
    ("5f00::/16", RESERVED),
    ("fc00::/8", UNIQUE_LOCAL),
    ("fd00::/8", UNIQUE_LOCAL),
    ("fe80::/10", LINK_LOCAL),
    ("fec0::/10", "site-local address"),
    ("ff00::/8", MULTICAST),
    ("ff02::1/128", MULTICAST),
    # outside 2000::/3 and not a special form: unallocated, never reachable
    ("4000::/3", RESERVED),
    ("8000::/2", RESERVED),
    ("c000::/3", RESERVED),
    ("1::/16", RESERVED),
    ("2001:10::/28", RESERVED),  # IETF protocol assignments (ORCHID)
    ("2001:20::/28", RESERVED),
    ("2001:1::1/128", RESERVED),
]

ALLOWED = [
    "1.1.1.1",
    "8.8.8.8",
    "9.255.255.255",
    "11.0.0.0",
    "100.63.255.255",
    "100.128.0.0",
    "126.255.255.255",
    "128.0.0.0",
    "169.253.255.255",
    "169.255.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.0",
    "192.167.255.255",
    "192.169.0.0",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2a00:1450:4001:80b::200e",
    "2c0f:fb50:4003::1",
    "3ffe:ffff::1",
    "64:ff9b::808:808",  # NAT64 of a public address
    "::ffff:8.8.8.8",
    "2002:808:808::1",  # 6to4 of a public address
    "2001:0:4136:e378:8000:63bf:f7f7:f7f7",  # Teredo, server 65.54.227.120, client 8.8.8.8
]


def _samples(cidr: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    net = ipaddress.ip_network(cidr)
    return [net[0], net[net.num_addresses // 2], net[-1]]


@pytest.mark.parametrize(("cidr", "reason"), V4_RANGES + V6_RANGES)
def test_every_blocked_range(cidr: str, reason: str) -> None:
    for address in _samples(cidr):
        if address in METADATA_ADDRESSES:
            continue
        assert blocked_reason(address) == reason, address


@pytest.mark.parametrize("text", ALLOWED)
def test_public_addresses_are_allowed(text: str) -> None:
    assert blocked_reason(ipaddress.ip_address(text)) is None


@pytest.mark.parametrize("address", sorted(METADATA_ADDRESSES, key=str))
def test_cloud_metadata_endpoints(address: IPv4Address | IPv6Address) -> None:
    assert blocked_reason(address) == METADATA


def _wrapped_forms(v4: IPv4Address) -> dict[str, IPv6Address]:
    n = int(v4)
    return {
        "ipv4-mapped": IPv6Address((0xFFFF << 32) | n),
        "ipv4-translated": IPv6Address((0xFFFF << 48) | n),
        "ipv4-compatible": IPv6Address(n),
        "6to4": IPv6Address((0x2002 << 112) | (n << 80) | 1),
        "nat64": IPv6Address((0x64FF9B << 96) | n),
        "nat64-local": IPv6Address((0x0064FF9B0001 << 80) | n),
        "teredo-client": IPv6Address(
            (0x20010000 << 96) | (int(IPv4Address("65.54.227.120")) << 64) | (~n & 0xFFFFFFFF)
        ),
        "teredo-server": IPv6Address((0x20010000 << 96) | (n << 64) | 0xF7F7F7F7),
    }


@pytest.mark.parametrize(("cidr", "reason"), V4_RANGES)
def test_embedded_ipv4_is_unwrapped(cidr: str, reason: str) -> None:
    for v4 in _samples(cidr):
        if int(v4) <= 1:
            continue  # ::0.0.0.0 / ::0.0.0.1 are the IPv6 unspecified/loopback addresses themselves
        for form, v6 in _wrapped_forms(v4).items():
            assert blocked_reason(v6) == reason, (form, str(v6), str(v4))
    metadata = IPv4Address("169.254.169.254")
    for form, v6 in _wrapped_forms(metadata).items():
        assert blocked_reason(v6) == METADATA, form


def test_embedded_ipv4_extraction() -> None:
    assert embedded_ipv4(IPv6Address("::ffff:127.0.0.1")) == [IPv4Address("127.0.0.1")]
    assert embedded_ipv4(IPv6Address("2002:c0a8:0101::")) == [IPv4Address("192.168.1.1")]
    assert embedded_ipv4(IPv6Address("64:ff9b::10.0.0.1")) == [IPv4Address("10.0.0.1")]
    server, client = embedded_ipv4(IPv6Address("2001:0:4136:e378:8000:63bf:3fff:fdd2"))
    assert (str(server), str(client)) == ("65.54.227.120", "192.0.2.45")
    assert embedded_ipv4(IPv6Address("2606:4700::1")) == []


def test_local_use_nat64_is_refused_even_for_public_ipv4() -> None:
    assert blocked_reason(IPv6Address("64:ff9b:1::808:808")) == RESERVED


def test_scoped_ipv6() -> None:
    assert blocked_reason(IPv6Address("fe80::1%eth0")) == LINK_LOCAL
    assert blocked_reason(IPv6Address("fd00:ec2::254%1")) == METADATA


def test_exhaustive_against_stdlib_view_of_ipv4() -> None:
    """Every /8 boundary: anything the stdlib calls non-global is blocked by cordon too."""
    for first in range(256):
        for address in (IPv4Address(first << 24), IPv4Address((first << 24) | 0xFFFFFF)):
            if not address.is_global:
                assert blocked_reason(address) is not None, address


@given(st.integers(min_value=0, max_value=2**32 - 1))
@settings(max_examples=300, deadline=None)
def test_random_ipv4_blocked_iff_in_a_blocked_range(value: int) -> None:
    address = IPv4Address(value)
    nets = [IPv4Network(c) for c, _ in V4_RANGES] + [IPv4Network("240.0.0.0/4")]
    expected = any(address in n for n in nets) or address in METADATA_ADDRESSES
    assert (blocked_reason(address) is not None) == expected
    if not address.is_global:
        assert blocked_reason(address) is not None
    assert blocked_reason(IPv6Address((0xFFFF << 32) | value)) == blocked_reason(address)


@given(st.integers(min_value=0, max_value=2**128 - 1))
@settings(max_examples=300, deadline=None)
def test_random_ipv6_never_crashes_and_non_global_is_blocked(value: int) -> None:
    address = IPv6Address(value)
    reason = blocked_reason(address)
    assert reason is None or isinstance(reason, str)
    if reason is None:
        assert address in ipaddress.ip_network("2000::/3") or embedded_ipv4(address)


# --- self-connect ---------------------------------------------------------------------------------


def test_self_connect() -> None:
    listen = 6790
    for text in ("127.0.0.1", "127.9.9.9", "0.0.0.0", "::1", "::", "::ffff:127.0.0.1"):
        assert self_connect(ipaddress.ip_address(text), listen, listen), text
    assert not self_connect(IPv4Address("127.0.0.1"), 443, listen)
    assert not self_connect(IPv4Address("8.8.8.8"), listen, listen)


# --- literals -------------------------------------------------------------------------------------

LITERALS = [
    ("127.0.0.1", "127.0.0.1"),
    ("127.1", "127.0.0.1"),
    ("127.0.1", "127.0.0.1"),
    ("2130706433", "127.0.0.1"),
    ("0x7f000001", "127.0.0.1"),
    ("0x7f.1", "127.0.0.1"),
    ("0X7F.0.0.1", "127.0.0.1"),
    ("0177.0.0.1", "127.0.0.1"),
    ("0177.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"),
    ("0", "0.0.0.0"),
    ("10.1", "10.0.0.1"),
    ("192.168.257", "192.168.1.1"),
    ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("2852039166", "169.254.169.254"),
    ("127.0.0.1.", "127.0.0.1"),
    ("4294967295", "255.255.255.255"),
    ("::1", "::1"),
    ("[::1]", "::1"),
    ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),
    ("::ffff:7f00:1", "::ffff:7f00:1"),
]

NOT_LITERALS = [
    "",
    "0x",
    "localhost",
    "api.test",
    "127.0.0.1.1",
    "256.0.0.1",
    "1.256.0.1",
    "1.2.65536",
    "4294967296",
    "08.0.0.1",
    "0x7g.1",
    "1..1",
    ".1.2.3",
    "127.0.0.1..",
    "+127.0.0.1",
    "-1",
    "1.2.3.4 ",
    "１２７.0.0.1",
    "[127.0.0.1]",
    "[::1",
    "::g",
    "1e3",
]


@pytest.mark.parametrize(("host", "expected"), LITERALS)
def test_literal_spellings(host: str, expected: str) -> None:
    assert literal_address(host) == ipaddress.ip_address(expected)


@pytest.mark.parametrize("host", NOT_LITERALS)
def test_not_literals(host: str) -> None:
    if host == "1.2.3.4 ":
        assert literal_address(host) == IPv4Address("1.2.3.4")  # surrounding space is stripped
        return
    assert literal_address(host) is None


@pytest.mark.parametrize(
    "host", ["127.1", "2130706433", "0x7f.1", "0177.0.0.1", "[::ffff:127.0.0.1]", "[::1]"]
)
def test_disguised_loopback_is_blocked(host: str) -> None:
    address = literal_address(host)
    assert address is not None
    assert blocked_reason(address) == LOOPBACK


@given(st.text(alphabet="0123456789abcdefxX.", max_size=24))
@settings(max_examples=1000, deadline=None)
def test_inet_aton_matches_libc(text: str) -> None:
    """The pure-Python reader agrees with the C library's inet_aton (a pure function, no DNS)."""
    try:
        expected: IPv4Address | None = IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert inet_aton(text) == expected


@pytest.mark.parametrize(
    "text", [h for h, _ in LITERALS if ":" not in h and not h.endswith(".")] + NOT_LITERALS
)
def test_inet_aton_table_matches_libc(text: str) -> None:
    if not text.isascii() or " " in text or ":" in text or "[" in text:
        return
    try:
        expected: IPv4Address | None = IPv4Address(socket.inet_aton(text))
    except OSError:
        expected = None
    assert inet_aton(text) == expected


def test_blocked_names() -> None:
    for name in ("localhost", "LOCALHOST", "localhost.", "foo.localhost", "a.b.localhost."):
        assert blocked_name(name) == LOOPBACK
    for name in ("localhost.example", "notlocalhost", "api.test"):
        assert blocked_name(name) is None


# --- CONNECT targets ------------------------------------------------------------------------------

GOOD_TARGETS = [
    ("api.openai.com:443", ("api.openai.com", 443)),
    ("API.Example.COM:8443", ("api.example.com", 8443)),
    ("example.com.:443", ("example.com.", 443)),
    ("a:1", ("a", 1)),
    ("x_y.test:65535", ("x_y.test", 65535)),
    ("127.0.0.1:443", ("127.0.0.1", 443)),
    ("127.1:80", ("127.1", 80)),
    ("[::1]:443", ("::1", 443)),
    ("[::FFFF:127.0.0.1]:443", ("::ffff:7f00:1", 443)),
    ("[2001:DB8:0:0:0:0:0:1]:8080", ("2001:db8::1", 8080)),
]

BAD_TARGETS = [
    "",
    "example.com",
    "example.com:",
    ":443",
    "example.com:0",
    "example.com:65536",
    "example.com:99999",
    "example.com:0443",
    "example.com:+443",
    "example.com:-1",
    "example.com:44 3",
    "example.com:443 ",
    " example.com:443",
    "example.com:4a3",
    "example.com:443:443",
    "example.com:١٢٣",
    "user@example.com:443",
    "user:pass@example.com:443",
    "example.com:443@evil.test:443",
    "exa mple.com:443",
    "example.com\r\n:443",
    "example.com\x00:443",
    "ex%61mple.com:443",
    "exämple.com:443",
    "example.com/path:443",
    "example.com?:443",
    "example.com#:443",
    "..:443",
    "a..b:443",
    ".example.com:443",
    "-example.com:443",
    "http://example.com:443",
    "::1:443",
    "[::1]",
    "[::1]443",
    "[::1]:",
    "[::1:443",
    "::1]:443",
    "[127.0.0.1]:443",
    "[fe80::1%25eth0]:443",
    "[fe80::1%eth0]:443",
    "[v1.fe]:443",
    "[::1]:443]",
    "[[::1]]:443",
    "a" * 300 + ":443",
]


@pytest.mark.parametrize(("authority", "expected"), GOOD_TARGETS)
def test_parse_connect_target(authority: str, expected: tuple[str, int]) -> None:
    assert parse_connect_target(authority) == expected


@pytest.mark.parametrize("authority", BAD_TARGETS)
def test_parse_connect_target_rejects(authority: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_connect_target(authority)
    message = str(info.value)
    assert len(message) < 200
    assert "\r" not in message and "\n" not in message and "\x00" not in message


@given(st.text(max_size=40))
@settings(max_examples=500, deadline=None)
def test_parse_connect_target_total(authority: str) -> None:
    """Any input either parses to a sane (host, port) or raises TargetError — nothing else."""
    try:
        host, port = parse_connect_target(authority)
    except TargetError:
        return
    assert 1 <= port <= 65535
    assert host and host.isascii() and host.isprintable()
    assert not set(host) & set("@/?#% \t\r\n[]")
