"""Host names and authorities: parsing and comparison (pure; the route lookup is
:func:`cordon_config.model.route_for_host`).

The binding invariant (SECURITY.md A.2) compares names with :func:`same_host`: lower-case, one trailing dot
dropped, IDN as punycode. Routes are names: an IP literal (in any spelling) never matches one.
"""

from __future__ import annotations

from cordon_config.hosts import comparable_host

__all__ = ["AuthorityError", "parse_absolute", "parse_authority", "same_host"]


class AuthorityError(ValueError):
    """An authority or absolute-form target cordon cannot interpret (message safe to show)."""


def same_host(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same host after canonicalisation."""
    return a == b or comparable_host(a) == comparable_host(b)


def parse_authority(text: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` / ``[v6][:port]`` (a Host header or an absolute-form authority)."""
    if not text or not text.isascii() or not text.isprintable() or " " in text or "@" in text:
        raise AuthorityError("invalid authority")
    if text.startswith("["):
        close = text.find("]")
        if close < 0:
            raise AuthorityError("invalid authority")
        host, rest = text[1:close], text[close + 1 :]
        if rest and not rest.startswith(":"):
            raise AuthorityError("invalid authority")
        port_text = rest[1:] if rest else None
    else:
        host, sep, port_text = text.partition(":")
        if not sep:
            port_text = None
    if not host:
        raise AuthorityError("invalid authority: empty host")
    if port_text is None:
        return host, None
    if not port_text.isdigit() or len(port_text) > 5 or not 1 <= int(port_text) <= 65535:
        raise AuthorityError("invalid authority: bad port")
    return host, int(port_text)


def parse_absolute(target: str) -> tuple[str, str, int | None, str]:
    """Split an absolute-form target into ``(scheme, host, port, origin-form path)``."""
    scheme, sep, rest = target.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in ("http", "https"):
        raise AuthorityError("absolute-form target must be http:// or https://")
    slash = len(rest)
    for mark in "/?#":
        index = rest.find(mark)
        if index >= 0:
            slash = min(slash, index)
    authority, path = rest[:slash], rest[slash:]
    host, port = parse_authority(authority)
    if "#" in path:
        path = path[: path.index("#")]
    if not path.startswith("/"):
        path = "/" + path
    return scheme, host, port, path
