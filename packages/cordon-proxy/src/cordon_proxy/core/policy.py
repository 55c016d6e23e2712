"""Destination policy for unrouted traffic: the SSRF denylist and strict CONNECT-target parsing.

Pure functions, no I/O, no DNS. The proxy resolves a name itself, passes every resulting address to
:func:`blocked_reason`, and connects to the address it checked (never a second lookup).

* :func:`blocked_reason` classifies one address; embedded IPv4 (IPv4-mapped, IPv4-compatible,
  IPv4-translated, 6to4, NAT64 and Teredo) is unwrapped and checked as well.
* :func:`literal_address` recognises an IP literal the way ``inet_aton``/resolvers do (``127.1``,
  ``2130706433``, ``0x7f.1``, ``0177.0.0.1``), so a disguised literal is checked before anything else.
* :func:`parse_connect_target` parses a CONNECT authority (``host:port``, ``[v6]:port``) strictly.
* :func:`blocked_name` refuses names that always mean this machine (``localhost``, ``*.localhost``).
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from cordon_config.hosts import comparable_host

__all__ = [
    "METADATA_ADDRESSES",
    "TargetError",
    "blocked_name",
    "blocked_reason",
    "embedded_ipv4",
    "literal_address",
    "parse_connect_target",
    "self_connect",
]

IPAddress = IPv4Address | IPv6Address

LOOPBACK = "loopback address"
PRIVATE = "private address (RFC 1918)"
LINK_LOCAL = "link-local address"
METADATA = "cloud metadata address"
CGNAT = "carrier-grade NAT address"
UNIQUE_LOCAL = "unique-local address"
MULTICAST = "multicast address"
UNSPECIFIED = "unspecified address"
BROADCAST = "broadcast address"
RESERVED = "reserved address"
DOCUMENTATION = "documentation address"
BENCHMARKING = "benchmarking address"
SITE_LOCAL = "site-local address"

#: Instance-metadata endpoints of the big clouds (checked before the range they sit in).
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",  # AWS, GCP, Azure, OCI, DigitalOcean, OpenStack
        "169.254.169.253",  # AWS VPC DNS
        "169.254.170.2",  # AWS ECS task metadata
        "169.254.170.23",  # AWS EKS pod identity
        "100.100.100.200",  # Alibaba Cloud
        "192.0.0.192",  # Oracle Cloud (classic)
        "fd00:ec2::254",  # AWS IMDS over IPv6
        "fd00:ec2::23",  # AWS EKS pod identity over IPv6
    )
)

# IANA IPv4 special-purpose registry (plus multicast/reserved); first match wins.
_V4_RULES: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), reason)
    for net, reason in (
        ("0.0.0.0/8", UNSPECIFIED),  # "this network"; 0.0.0.0 reaches the local host on Linux
        ("10.0.0.0/8", PRIVATE),
        ("100.64.0.0/10", CGNAT),
        ("127.0.0.0/8", LOOPBACK),
        ("169.254.0.0/16", LINK_LOCAL),
        ("172.16.0.0/12", PRIVATE),
        ("192.0.0.0/24", RESERVED),  # IETF protocol assignments (incl. NAT64 discovery)
        ("192.0.2.0/24", DOCUMENTATION),
        ("192.88.99.0/24", RESERVED),  # deprecated 6to4 relay anycast
        ("192.168.0.0/16", PRIVATE),
        ("198.18.0.0/15", BENCHMARKING),
        ("198.51.100.0/24", DOCUMENTATION),
        ("203.0.113.0/24", DOCUMENTATION),
        ("224.0.0.0/4", MULTICAST),
        ("255.255.255.255/32", BROADCAST),
        ("240.0.0.0/4", RESERVED),
    )
)

# IPv6 ranges that are refused outright (embedded-IPv4 forms are unwrapped before these are consulted).
_V6_RULES: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), reason)
    for net, reason in (
        ("::/128", UNSPECIFIED),
        ("::1/128", LOOPBACK),
        ("100::/64", RESERVED),  # discard-only
        ("100:0:0:1::/64", RESERVED),  # dummy prefix
        ("2001:2::/48", BENCHMARKING),
        ("2001:db8::/32", DOCUMENTATION),
        ("3fff::/20", DOCUMENTATION),
        ("5f00::/16", RESERVED),  # SRv6 SIDs
        ("fc00::/7", UNIQUE_LOCAL),
        ("fe80::/10", LINK_LOCAL),
        ("fec0::/10", SITE_LOCAL),
        ("ff00::/8", MULTICAST),
    )
)

_IETF_ASSIGNMENTS = IPv6Network("2001::/23")
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_MAPPED = IPv6Network("::ffff:0:0/96")
_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_COMPATIBLE = IPv6Network("::/96")
_NAT64_WELL_KNOWN = IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = IPv6Network("2002::/16")
_TEREDO = IPv6Network("2001::/32")


def _v4(value: int) -> IPv4Address:
    return IPv4Address(value & 0xFFFFFFFF)


def embedded_ipv4(address: IPv6Address) -> list[IPv4Address]:
    """Every IPv4 address a translator, tunnel or stack could reach through ``address`` (may be empty)."""
    value = int(address)
    if address in _MAPPED or address in _TRANSLATED:
        return [_v4(value)]
    if address in _COMPATIBLE:  # deprecated IPv4-compatible ::a.b.c.d (:: and ::1 are handled earlier)
        return [_v4(value)]
    if address in _NAT64_WELL_KNOWN or address in _NAT64_LOCAL:
        return [_v4(value)]  # /96 layout; the rest of 64:ff9b:1::/48 is refused as local-use anyway
    if address in _SIX_TO_FOUR:
        return [_v4(value >> 80)]
    if address in _TEREDO:
        server = _v4(value >> 64)
        client = _v4(~value)
        return [server, client]
    return []


def blocked_reason(address: IPv4Address | IPv6Address) -> str | None:
    """Why cordon refuses to connect to ``address`` (a short phrase), or None when it is allowed."""
    if address in METADATA_ADDRESSES:
        return METADATA
    if isinstance(address, IPv4Address):
        for net4, reason4 in _V4_RULES:
            if address in net4:
                return reason4
        return None
    if address.scope_id:  # a zone index only makes sense for non-global addresses
        address = IPv6Address(int(address))
        if address in METADATA_ADDRESSES:
            return METADATA
    for net, reason in _V6_RULES:
        if address in net:
            return reason
    inner = embedded_ipv4(address)
    for candidate in inner:
        inner_reason = blocked_reason(candidate)
        if inner_reason is not None:
            return inner_reason
    if address in _NAT64_LOCAL:
        return RESERVED  # local-use NAT64 translates into the operator's own network
    if inner:
        return None  # a globally routable IPv4 destination in an IPv6 wrapper
    if address in _IETF_ASSIGNMENTS:
        return RESERVED
    if address not in _GLOBAL_UNICAST:
        return RESERVED
    return None


def self_connect(address: IPv4Address | IPv6Address, port: int, listen_port: int) -> bool:
    """True when connecting to ``address:port`` would reach cordon's own listener (a proxy loop)."""
    if port != listen_port:
        return False
    candidates: list[IPAddress] = [address]
    if isinstance(address, IPv6Address):
        candidates.extend(embedded_ipv4(address))
    for candidate in candidates:
        if candidate.is_loopback or candidate.is_unspecified:
            return True
        if isinstance(candidate, IPv4Address) and candidate in _V4_RULES[0][0]:
            return True
    return False


# --- IP literals ------------------------------------------------------------------------------------

_DEC = frozenset("0123456789")
_OCT = frozenset("01234567")
_HEX = frozenset("0123456789abcdefABCDEF")


def _inet_aton_part(part: str) -> int | None:
    """One dotted part as C ``inet_aton`` reads it: decimal, ``0``-prefixed octal or ``0x`` hex."""
    if not part or part[0] not in _DEC:
        return None
    if part[0] == "0" and len(part) > 1 and part[1] in "xX":
        digits, base, allowed = part[2:], 16, _HEX
        if not digits:
            return None
    elif part[0] == "0":
        digits, base, allowed = part[1:] or "0", 8, _OCT
    else:
        digits, base, allowed = part, 10, _DEC
    if any(c not in allowed for c in digits):
        return None
    value = int(digits, base)
    return value if value <= 0xFFFFFFFF else None


def inet_aton(text: str) -> IPv4Address | None:
    """Pure-Python ``inet_aton``: ``a``, ``a.b``, ``a.b.c`` or ``a.b.c.d`` with C number syntax."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_inet_aton_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    *leading, last = nums
    if any(v > 0xFF for v in leading):
        return None
    if last >= 1 << (8 * (4 - len(leading))):
        return None
    value = 0
    for v in leading:
        value = (value << 8) | v
    value = (value << (8 * (4 - len(leading)))) | last
    return IPv4Address(value)


def literal_address(host: str) -> IPv4Address | IPv6Address | None:
    """The address ``host`` denotes without any DNS lookup, or None when it is a name.

    IPv6 may be bracketed. IPv4 is read with ``inet_aton`` rules, so ``127.1``, ``2130706433``,
    ``0x7f.1`` and ``0177.0.0.1`` are all 127.0.0.1; one trailing dot is tolerated (``127.0.0.1.``).
    """
    text = host.strip()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
        if ":" not in text:
            return None
    if ":" in text:
        try:
            return IPv6Address(text)
        except ValueError:
            return None
    if not text.isascii():
        return None
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]
    return inet_aton(text)


def blocked_name(host: str) -> str | None:
    """Why a host *name* is refused before resolution (``localhost`` and ``*.localhost``), or None."""
    name = comparable_host(host.strip())
    if name == "localhost" or name.endswith(".localhost"):
        return LOOPBACK
    return None


# --- CONNECT authority ----------------------------------------------------------------------------


class TargetError(ValueError):
    """A CONNECT target that is not a plain ``host:port``; the message is safe to show the client."""


_REG_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,252})")
_PORT = re.compile(r"[1-9][0-9]{0,4}")


def _shown(authority: str) -> str:
    snippet = authority[:80].encode("ascii", "backslashreplace").decode("ascii")
    return repr(snippet) + ("…" if len(authority) > 80 else "")


def parse_connect_target(authority: str) -> tuple[str, int]:
    """Split a CONNECT authority into ``(host, port)``; raises :class:`TargetError` on anything odd.

    ``host`` is a reg-name/IPv4 (returned lower-case) or a bracketed IPv6 literal (returned without
    brackets, compressed). ``port`` is a decimal integer 1-65535 without sign or leading zeros.
    Userinfo, a missing port, percent-encoding, zone ids, whitespace and control characters are refused.
    """
    if not isinstance(authority, str) or not authority:
        raise TargetError("empty CONNECT target")
    if len(authority) > 262 or not authority.isascii() or not authority.isprintable() or " " in authority:
        raise TargetError(f"invalid CONNECT target {_shown(authority)}")
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0 or authority[close + 1 : close + 2] != ":":
            raise TargetError(f"invalid CONNECT target {_shown(authority)}: expected [address]:port")
        inner, port_text = authority[1:close], authority[close + 2 :]
        if "%" in inner:
            raise TargetError(f"invalid CONNECT target {_shown(authority)}: zone ids are not allowed")
        try:
            host = IPv6Address(inner).compressed
        except ValueError:
            raise TargetError(f"invalid CONNECT target {_shown(authority)}: bad IPv6 address") from None
    else:
        host, sep, port_text = authority.rpartition(":")
        if not sep:
            raise TargetError(f"invalid CONNECT target {_shown(authority)}: expected host:port")
        if not _REG_NAME.fullmatch(host) or ".." in host:
            raise TargetError(f"invalid CONNECT target {_shown(authority)}: bad host")
        host = host.lower()
    if not _PORT.fullmatch(port_text) or not 1 <= int(port_text) <= 65535:
        raise TargetError(f"invalid CONNECT target {_shown(authority)}: bad port")
    return host, int(port_text)
