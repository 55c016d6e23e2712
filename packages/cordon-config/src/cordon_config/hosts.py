"""Host names: the one canonical form every package compares and stores them in (pure, stdlib only).

The rule is :func:`fold`: lower case, one trailing dot dropped, an internationalised name as punycode. On it:

* :func:`canonical_host`: a route's host (a DNS name; IP literals refused, routes are names: SECURITY.md A.2).
  Config validation, ``Config.route_for_host``, the proxy's route lookup, ``[egress]`` entries and the config
  facts use it.
* :func:`canonical_leaf_host`: what a leaf certificate or a name constraint is for (a DNS name, ``_`` allowed
  in a label, or an IP literal in its compressed form). cordon-ca uses it.
* :func:`comparable_host`: any host a client sent, in the form to compare it in: canonical when it is a valid
  name, else folded as far as it goes. The proxy's host comparisons, ``localhost`` check and resolver use it.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["canonical_host", "canonical_leaf_host", "comparable_host", "fold"]

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LEAF_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")


def fold(name: str) -> str:
    """Lower case, one trailing dot dropped, IDN → punycode; raises ValueError for a name IDNA cannot encode."""
    if name.endswith("."):
        name = name[:-1]
    if name.isascii():
        return name.lower()
    try:
        return name.encode("idna").decode("ascii").lower()
    except UnicodeError as exc:
        raise ValueError(f"host {name!r} is not a valid internationalised name") from exc


def is_ip(text: str) -> bool:
    """True when ``text`` is an IP literal (no brackets)."""
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def canonical_host(name: str) -> str:
    """A route's host in canonical form; raises ValueError (one line) when it is not a valid DNS name.

    IP literals are rejected: routes are names (SECURITY.md A.2).
    """
    if not isinstance(name, str) or not name:
        raise ValueError("host is empty")
    if name.strip() != name:
        raise ValueError(f"host {name!r} has surrounding whitespace")
    if is_ip(name.removesuffix(".").strip("[]")):
        raise ValueError(f"host {name!r} is an IP address; routes match DNS names only")
    try:
        host = fold(name)
    except ValueError:
        raise ValueError(f"host {name!r} is not a valid internationalised name") from None
    if len(host) > 253:
        raise ValueError(f"host {name!r} is longer than 253 characters")
    labels = host.split(".")
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"host {name!r} is not a valid DNS name")
    if labels[-1].isdigit():
        raise ValueError(f"host {name!r} ends in a numeric label (looks like an IP address)")
    return host


def canonical_leaf_host(host: str) -> str:
    """What a certificate names: an IP literal (brackets dropped, compressed) or a folded DNS name whose labels
    may hold ``_``; raises ValueError when it is neither."""
    if not isinstance(host, str) or not host or host != host.strip():
        raise ValueError(f"invalid host {host!r}")
    name = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(name).compressed
    except ValueError:
        pass
    try:
        name = fold(name)
    except ValueError:
        raise ValueError(f"invalid host {host!r}") from None
    if len(name) > 253 or not all(_LEAF_LABEL.match(label) for label in name.split(".")):
        raise ValueError(f"invalid host {host!r}")
    return name


def comparable_host(host: str) -> str:
    """``host`` as the proxy compares it: :func:`canonical_host` when it is a valid name, else lower case with
    one trailing dot dropped (never two: ``a..`` stays as it is, a name no resolver accepts)."""
    try:
        return canonical_host(host)
    except ValueError:
        lowered = host.lower()
        return lowered[:-1] if lowered.endswith(".") and not lowered.endswith("..") else lowered
