"""Events: what the asyncio edge tells a :class:`~cordon_proxy.core.session.Session`.

A *reply* names the command it answers in ``for_`` (the very command object the session returned); the
session raises :class:`~cordon_proxy.core.states.ProtocolError` on a reply to anything it is not awaiting.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address

from cordon_proxy.core.commands import FetchSecret, OpenTunnel, OpenUpstream, Resolve, StartClientTLS
from cordon_proxy.core.inject import SecretLike

__all__ = [
    "ClientClosed",
    "ClientData",
    "ClientTLSReady",
    "Event",
    "Reply",
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
    """The client sent EOF, reset the connection, idled out, failed its TLS handshake or a write to it failed
    (expected in every state)."""


@dataclass(slots=True)
class ClientTLSReady:
    """The MITM handshake with the client finished; ``sni`` is the server name the client sent."""

    for_: StartClientTLS
    sni: str | None


@dataclass(slots=True)
class SecretReady:
    """The secret for the pending request's route (masked repr; only :mod:`inject` reveals it)."""

    for_: FetchSecret
    secret: SecretLike


@dataclass(slots=True)
class SecretFailed:
    """The secret could not be fetched; ``reason`` (the whole one-line message) never contains the value."""

    for_: FetchSecret
    reason: str


@dataclass(slots=True)
class Resolved:
    """The addresses ``for_.host`` resolved to."""

    for_: Resolve
    addresses: list[IPv4Address | IPv6Address]


@dataclass(slots=True)
class ResolveFailed:
    """Name resolution failed."""

    for_: Resolve
    reason: str


@dataclass(slots=True)
class UpstreamConnected:
    """The upstream connection ``for_`` asked for is ready (TLS verified when TLS was asked for).

    ``reused``: it came from the idle pool (it may turn out to have been closed by the upstream meanwhile).
    """

    for_: OpenUpstream
    reused: bool = False


@dataclass(slots=True)
class TunnelConnected:
    """The raw TCP connection ``for_`` asked for is ready."""

    for_: OpenTunnel


@dataclass(slots=True)
class UpstreamFailed:
    """Connecting to the upstream failed; ``code`` is an X-Cordon-Error code (upstream-failed/tls/timeout)."""

    for_: OpenUpstream | OpenTunnel
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
    """No response head (or no body bytes) from the upstream within the configured time, or the upstream
    accepted no byte of the request for that long."""

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

Reply = ClientTLSReady | SecretReady | SecretFailed | Resolved | ResolveFailed | UpstreamConnected | TunnelConnected | UpstreamFailed
"""The events that answer a command (each names it in ``for_``)."""
