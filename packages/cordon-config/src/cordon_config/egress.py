"""``[egress] allow`` entries: their grammar and matching (pure, stdlib only; the validator and the proxy core
both call it).

An entry is a DNS name (matched exactly, after the same canonicalisation as route hosts: lower case, no
trailing dot, IDN as punycode), an IP address (matched exactly, in any spelling the proxy accepts), or
``*.`` followed by a name of at least two labels: every name *below* it, at any depth (``*.npmjs.org``
allows ``registry.npmjs.org`` and ``a.b.npmjs.org``, not ``npmjs.org`` itself). Ports are not part of it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from cordon_config.hosts import canonical_host

__all__ = ["EgressAllow", "canonical_pattern"]


def canonical_pattern(text: str) -> str:
    """The canonical form of an allow entry; raises ValueError (one line) when it is not valid."""
    if not isinstance(text, str) or not text:
        raise ValueError("an allow entry must be a non-empty string")
    candidate = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    try:
        return str(ipaddress.ip_address(candidate))
    except ValueError:
        pass
    if text.startswith("*."):
        rest = text[2:]
        if "*" in rest:
            raise ValueError(f'"{text}": only one leading "*." is allowed')
        try:
            domain = canonical_host(rest)
        except ValueError as exc:
            raise ValueError(f'"{text}": {exc}') from None
        if "." not in domain:
            raise ValueError(f'"{text}" would allow every name under a top-level domain')
        return f"*.{domain}"
    if "*" in text:
        raise ValueError(f'"{text}": a wildcard is allowed only as a leading "*." label')
    if ":" in text or "/" in text:
        raise ValueError(f'"{text}" is not a host name (no scheme, port or path)')
    try:
        return canonical_host(text)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


class EgressAllow:
    """Compiled allow entries: exact names, IP addresses and ``*.`` suffixes."""

    __slots__ = ("addresses", "names", "suffixes")

    def __init__(self, patterns: Iterable[str]) -> None:
        names: set[str] = set()
        addresses: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        suffixes: list[str] = []
        for pattern in patterns:
            if pattern.startswith("*."):
                suffixes.append(pattern[1:])  # ".domain"
                continue
            try:
                addresses.add(ipaddress.ip_address(pattern))
            except ValueError:
                names.add(pattern)
        self.names = frozenset(names)
        self.addresses = frozenset(addresses)
        self.suffixes = tuple(suffixes)

    def allows_name(self, name: str) -> bool:
        """Whether the canonical DNS ``name`` is allowed."""
        return name in self.names or name.endswith(self.suffixes)

    def allows_address(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether the IP ``address`` is allowed."""
        return address in self.addresses
