"""Answers cordon gives itself (SECURITY.md A.11): ``text/plain``, one line ``cordon: ...``.

Every such answer carries ``X-Cordon-Error: <code>`` and ``Connection: close``; the caller closes the
connection after sending it. Messages never contain a secret, a header value or a query string.
"""

from __future__ import annotations

from collections.abc import Iterable

from cordon_proxy.core.http1 import Headers, write_response_head

__all__ = ["CODES", "error_response", "one_line", "secret_unavailable"]

#: X-Cordon-Error code -> HTTP status.
CODES: dict[str, int] = {
    "bad-request": 400,
    "not-found": 400,
    "blocked": 403,
    "https-required": 403,
    "route-policy": 403,
    "egress-denied": 403,
    "rate-limited": 429,
    "proxy-auth-required": 407,
    "header-too-large": 431,
    "host-mismatch": 421,
    "upstream-failed": 502,
    "upstream-tls": 502,
    "bad-upstream-response": 502,
    "unscannable-response": 502,
    "key-in-response": 502,
    "secret-unavailable": 503,
    "too-many-connections": 503,
    "upstream-timeout": 504,
}


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable ASCII line of at most ``limit`` characters."""
    if text.isascii() and text.isprintable() and "  " not in text and text[:1] != " " and text[-1:] != " ":
        flat = text  # already one printable ASCII line (the common case): nothing to collapse or replace
    else:
        flat = " ".join(text.split())
        flat = flat.encode("ascii", "backslashreplace").decode("ascii")
        flat = "".join(c if c.isprintable() else "?" for c in flat)
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def error_response(
    code: str,
    message: str,
    *,
    extra_headers: Iterable[tuple[bytes, bytes]] = (),
    version: str = "1.1",
) -> bytes:
    """A complete error response (head and body in one bytes object) for X-Cordon-Error ``code``."""
    status = CODES[code]
    body = b"cordon: " + one_line(message).encode("ascii") + b"\n"
    headers: Headers = [
        (b"Content-Type", b"text/plain; charset=utf-8"),
        (b"Content-Length", str(len(body)).encode("ascii")),
        (b"X-Cordon-Error", code.encode("ascii")),
        (b"Connection", b"close"),
        *extra_headers,
    ]
    return write_response_head(status, headers, version=version) + body


def secret_unavailable(route_name: str, reason: str, kind: str = "route") -> str:
    """The one message for a route (or ``kind`` listener) whose secret could not be had (``reason`` never holds
    the value)."""
    return f'secret for {kind} "{route_name}" unavailable: {reason}'
