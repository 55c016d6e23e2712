"""Normalising the host a leaf is issued for: a DNS name or an IP literal."""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509

from cordon_ca.errors import HostNotAllowed

_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def normalize_host(host: str) -> str:
    """Lower-case, drop one trailing dot, IDN → punycode, unbracket IPv6; raise HostNotAllowed if invalid."""
    if not isinstance(host, str) or not host or host != host.strip():
        raise HostNotAllowed(f"invalid host {host!r}")
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    if name.endswith("."):
        name = name[:-1]
    try:
        name = name.lower() if name.isascii() else name.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise HostNotAllowed(f"invalid host {host!r}") from exc
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise HostNotAllowed(f"invalid host {host!r}")
    return name


def is_ip(host: str) -> bool:
    """True when the (normalised) host is an IP literal."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def general_name(host: str) -> x509.GeneralName:
    """The SubjectAlternativeName entry for a normalised host."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
