"""Events: what the asyncio edge tells a :class:`~cordon_proxy.core.session.Session`."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from cordon_proxy.core.inject import SecretLike

__all__ = [
    "ClientClosed",
    "ClientData",
    "ClientTLSReady",
    "Event",
    "ResolveFailed",
    "Resolved",
    "SecretFailed",
    "SecretReady",
    "TunnelConnected",
    "UpstreamClosed",
    "UpstreamConnected",
    "UpstreamData",
    "UpstreamFailed",
    "UpstreamTimeout",
]


@dataclass(slots=True)
class ClientData:
    """Bytes from the client (plaintext: before CONNECT, or decrypted inside a MITM tunnel)."""

    data: bytes


@dataclass(slots=True)
class ClientClosed:
    """The client sent EOF, reset the connection or idled out."""


@dataclass(slots=True)
class ClientTLSReady:
    """The MITM handshake with the client finished; ``sni`` is the server name the client sent."""

    sni: str | None


@dataclass(slots=True)
class SecretReady:
    """The secret for the pending request's route (masked repr; only :mod:`inject` reveals it)."""

    secret: SecretLike


@dataclass(slots=True)
class SecretFailed:
    """The secret could not be fetched; ``reason`` never contains the value."""

    reason: str


@dataclass(slots=True)
class Resolved:
    """Addresses the edge resolved for the last :class:`~cordon_proxy.core.commands.Resolve`."""

    addresses: list[IPv4Address | IPv6Address]


@dataclass(slots=True)
class ResolveFailed:
    """Name resolution failed."""

    reason: str


@dataclass(slots=True)
class UpstreamConnected:
    """The upstream connection of the last OpenUpstream is ready (TLS verified when TLS was asked for).

    ``reused``: it came from the idle pool (it may turn out to have been closed by the upstream meanwhile).
    """

    reused: bool = False


@dataclass(slots=True)
class TunnelConnected:
    """The raw TCP connection of the last OpenTunnel is ready."""


@dataclass(slots=True)
class UpstreamFailed:
    """Connecting to the upstream failed; ``code`` is an X-Cordon-Error code (upstream-failed/tls/timeout)."""

    code: str
    message: str


@dataclass(slots=True)
class UpstreamData:
    """Bytes from the upstream (decrypted)."""

    data: bytes


@dataclass(slots=True)
class UpstreamClosed:
    """The upstream sent EOF or reset the connection."""


@dataclass(slots=True)
class UpstreamTimeout:
    """No response head (or no body bytes) from the upstream within the configured time."""

    seconds: float


Event = (
    ClientData
    | ClientClosed
    | ClientTLSReady
    | SecretReady
    | SecretFailed
    | Resolved
    | ResolveFailed
    | UpstreamConnected
    | TunnelConnected
    | UpstreamFailed
    | UpstreamData
    | UpstreamClosed
    | UpstreamTimeout
)
