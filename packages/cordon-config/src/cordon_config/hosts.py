"""Hostname canonicalisation shared by validation and routing (pure)."""

from __future__ import annotations

import ipaddress
import re

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def canonical_host(name: str) -> str:
    """Lower-case, drop one trailing dot, IDN → punycode; raise ValueError when not a valid DNS name.

    IP literals are rejected: routes are names (SECURITY.md A.2).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("host is empty")
    host = name.strip()
    if host != name:
        raise ValueError(f"host {name!r} has surrounding whitespace")
    if host.endswith("."):
        host = host[:-1]
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        raise ValueError(f"host {name!r} is an IP address; routes match DNS names only")
    try:
        ascii_host = host.encode("idna").decode("ascii").lower() if not host.isascii() else host.lower()
    except UnicodeError as exc:
        raise ValueError(f"host {name!r} is not a valid internationalised name") from exc
    if len(ascii_host) > 253:
        raise ValueError(f"host {name!r} is longer than 253 characters")
    labels = ascii_host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"host {name!r} is not a valid DNS name")
    if labels[-1].isdigit():
        raise ValueError(f"host {name!r} ends in a numeric label (looks like an IP address)")
    return ascii_host
