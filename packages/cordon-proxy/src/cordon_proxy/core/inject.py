"""Header hygiene and credential injection (SECURITY.md A.4), pure.

For a routed request: drop everything the client's ``Connection`` header names, the hop-by-hop headers,
``Proxy-Authorization``, every ``Authorization`` and every copy of the route's header (case-insensitively),
then set exactly one injected header. ``Host`` and the framing header are re-set by cordon; ``Via`` is added.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Protocol

from cordon_config.model import BasicAuth, HeaderAuth, Route
from cordon_config.secrets import is_header_value

from cordon_proxy.core.http1 import Headers

__all__ = [
    "HOP_BY_HOP",
    "VIA",
    "InjectionError",
    "SecretLike",
    "connection_tokens",
    "forward_request_headers",
    "forward_response_headers",
    "injected_header",
]

VIA = b"1.1 cordon"

#: Never forwarded in either direction (RFC 9110 §7.6.1 plus the Proxy-* family).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"content-length",  # re-set from the framing cordon chose
        b"host",  # re-set from the verified authority
    }
)


class SecretLike(Protocol):
    """What injection needs of ``cordon_config.secrets.Secret``."""

    def reveal(self) -> str: ...


class InjectionError(ValueError):
    """The secret cannot be sent as a header value (message names the route, never the value)."""


def connection_tokens(headers: Headers, lowered: list[bytes] | None = None) -> set[bytes]:
    """Lower-cased names listed in every ``Connection`` header."""
    names: set[bytes] = set()
    if lowered is not None and b"connection" not in lowered:
        return names
    for name, value in headers:
        if name.lower() == b"connection":
            for token in value.split(b","):
                token = token.strip().lower()
                if token:
                    names.add(token)
    return names


def injected_header(route: Route, secret: SecretLike) -> tuple[bytes, bytes]:
    """The one header cordon adds for ``route``; raises :class:`InjectionError` for an unusable value."""
    raw = secret.reveal()
    if not is_header_value(raw):
        raise InjectionError(f'secret for route "{route.name}" is not a valid header value')
    auth = route.auth
    if isinstance(auth, BasicAuth):
        token = base64.b64encode(f"{auth.username}:{raw}".encode()).decode("ascii")
        return b"Authorization", b"Basic " + token.encode("ascii")
    if isinstance(auth, HeaderAuth):
        value = f"{auth.scheme} {raw}" if auth.scheme else raw
        return auth.header_name.encode("ascii"), value.encode("ascii")
    raise InjectionError(f'route "{route.name}" has an unknown auth type')


def _framing_header(body: str, length: int | None) -> tuple[bytes, bytes] | None:
    if body == "chunked":
        return b"Transfer-Encoding", b"chunked"
    if body == "length" or length is not None:
        return b"Content-Length", str(length or 0).encode("ascii")
    return None


@lru_cache(maxsize=256)
def _request_drop(routed: bool, header_name: str | None) -> frozenset[bytes]:
    """The request header names dropped when the client's ``Connection`` header names none (cached)."""
    drop = set(HOP_BY_HOP)
    if routed:
        drop.add(b"authorization")
        if header_name:
            drop.add(header_name.lower().encode("ascii"))
    return frozenset(drop)


def forward_request_headers(
    headers: Headers,
    *,
    host: bytes,
    body: str,
    content_length: int | None,
    route: Route | None = None,
    injected: tuple[bytes, bytes] | None = None,
    keep: frozenset[bytes] = frozenset(),
    lowered: list[bytes] | None = None,
) -> Headers:
    """The header list cordon sends upstream: cleaned, with ``Host``, framing, the injected header and Via.

    ``keep`` names hop-by-hop headers to let through anyway (``upgrade`` for WebSocket). ``lowered`` are the
    header names lower-cased (parallel to ``headers``) when the parser already computed them.
    """
    tokens = connection_tokens(headers, lowered)
    header_name = getattr(route.auth, "header_name", None) if route is not None else None
    drop: set[bytes] | frozenset[bytes]
    if tokens or keep:
        drop = dropped = set((tokens | HOP_BY_HOP) - keep)
        if route is not None:
            dropped.add(b"authorization")
            if header_name:
                dropped.add(header_name.lower().encode("ascii"))
    else:
        drop = _request_drop(route is not None, header_name)
    if lowered is None:
        lowered = [n.lower() for n, _ in headers]
    out: Headers = [(b"Host", host)]
    out += [pair for pair, name in zip(headers, lowered, strict=True) if name not in drop]
    framing = _framing_header(body, content_length)
    if framing is not None:
        out.append(framing)
    if injected is not None:
        out.append(injected)
    out.append((b"Via", VIA))
    return out


def forward_response_headers(
    headers: Headers,
    *,
    framing: tuple[bytes, bytes] | None,
    keep: frozenset[bytes] = frozenset(),
    lowered: list[bytes] | None = None,
) -> Headers:
    """The response header list cordon sends to the client: hop-by-hop removed, framing re-set, Via added."""
    tokens = connection_tokens(headers, lowered)
    drop = (tokens | HOP_BY_HOP) - keep if tokens or keep else HOP_BY_HOP
    if lowered is None:
        lowered = [n.lower() for n, _ in headers]
    out: Headers = [pair for pair, name in zip(headers, lowered, strict=True) if name not in drop]
    if framing is not None:
        out.append(framing)
    out.append((b"Via", VIA))
    return out
