"""Host names and authorities: parsing, comparison and route lookup (pure).

The binding invariant (SECURITY.md A.2) compares names with :func:`same_host`: lower-case, one trailing dot
dropped, IDN as punycode. Routes are names: an IP literal (in any spelling) never matches one.
"""

from __future__ import annotations

from collections.abc import Sequence

from cordon_config.hosts import canonical_host
from cordon_config.model import Route

__all__ = ["AuthorityError", "find_route", "normalize", "parse_absolute", "parse_authority", "same_host"]


class AuthorityError(ValueError):
    """An authority or absolute-form target cordon cannot interpret (message safe to show)."""


def normalize(host: str) -> str:
    """Comparable form of a host: canonical DNS name, or the lower-cased text when it is not one."""
    try:
        return canonical_host(host)
    except ValueError:
        return host.lower().rstrip(".") if host.endswith(".") and not host.endswith("..") else host.lower()


def same_host(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` name the same host after canonicalisation."""
    return a == b or normalize(a) == normalize(b)


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


def find_route(routes: Sequence[Route], host: str, port: int | None) -> Route | None:
    """The route for ``host`` (and ``port`` when the route names one), or None. IP literals never match."""
    try:
        wanted = canonical_host(host)
    except ValueError:
        return None
    for route in routes:
        if route.host == wanted and (route.port is None or port is None or route.port == port):
            return route
    return None
