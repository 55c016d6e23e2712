"""The vocabulary between the asyncio edge and the sans-IO :class:`~cordon_pg.session.Session`.

Events go into ``Session.handle(event)``; commands come out, and the edge performs them in order. Everything
here is a small immutable value; none holds a socket.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ClientClosed",
    "ClientData",
    "ClientTLSReady",
    "Close",
    "ConnectUpstream",
    "Failed",
    "FetchSecret",
    "ForwardCancel",
    "InvalidateSecret",
    "Log",
    "SecretReady",
    "SendClient",
    "SendUpstream",
    "StartClientTLS",
    "StartRelay",
    "StartUpstreamTLS",
    "UpstreamClosed",
    "UpstreamConnected",
    "UpstreamData",
    "UpstreamTLSReady",
]


# -- events (edge → session) --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientData:
    """Bytes from the client (decrypted when the client leg is TLS)."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ClientTLSReady:
    """The TLS handshake with the client finished."""


@dataclass(frozen=True, slots=True)
class UpstreamConnected:
    """TCP to the upstream is open (to the address that was resolved and pinned)."""


@dataclass(frozen=True, slots=True)
class UpstreamTLSReady:
    """The verified TLS handshake with the upstream finished; ``binding`` is its tls-server-end-point hash."""

    binding: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class UpstreamData:
    """Bytes from the upstream."""

    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SecretReady:
    """The listener's password (a masked ``cordon_config.secrets.Secret``)."""

    secret: Any = field(repr=False)


@dataclass(frozen=True, slots=True)
class Failed:
    """Something the edge did failed: ``stage`` is ``client-tls``, ``upstream-connect``, ``upstream-tls`` or
    ``secret``; ``reason`` and ``hint`` are safe, one-line texts."""

    stage: str
    reason: str
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class ClientClosed:
    """The client closed its connection (or it broke)."""


@dataclass(frozen=True, slots=True)
class UpstreamClosed:
    """The upstream closed its connection (or it broke)."""


# -- commands (session → edge) ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendClient:
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class SendUpstream:
    data: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartClientTLS:
    """Begin the server-side TLS handshake on the client connection now (nothing else is read meanwhile)."""


@dataclass(frozen=True, slots=True)
class ConnectUpstream:
    """Resolve the upstream once, connect to the checked address; answer UpstreamConnected or Failed."""


@dataclass(frozen=True, slots=True)
class StartUpstreamTLS:
    """Begin the verified (verify-full) TLS handshake with the upstream; answer UpstreamTLSReady or Failed."""


@dataclass(frozen=True, slots=True)
class FetchSecret:
    """Fetch the password (through the shared secret cache); answer SecretReady or Failed('secret')."""


@dataclass(frozen=True, slots=True)
class InvalidateSecret:
    """The upstream rejected the password: drop its cached value so a rotated one is fetched next time."""


@dataclass(frozen=True, slots=True)
class ForwardCancel:
    """A CancelRequest: forward it to the session's upstream if (pid, key) names a live session of ours."""

    pid: int
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartRelay:
    """The handshake is over: write ``to_upstream``/``to_client`` (bytes read past the handshake) and relay
    both ways without parsing. ``backend`` is the upstream's (pid, key) and ``client_key`` the key the client
    was given instead (for cancel requests); ``token`` the proxy token's name when tokens are on."""

    to_upstream: bytes = field(repr=False)
    to_client: bytes = field(repr=False)
    backend: tuple[int, bytes] | None = field(default=None, repr=False)
    client_key: bytes | None = field(default=None, repr=False)
    token: str | None = None


@dataclass(frozen=True, slots=True)
class Close:
    """Close both connections (after writing what was sent). ``reason`` is for the log."""

    reason: str


@dataclass(frozen=True, slots=True)
class Log:
    level: str
    message: str
    fields: dict[str, Any] = field(default_factory=dict)
