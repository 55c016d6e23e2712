"""Commands: what a :class:`~cordon_proxy.core.session.Session` asks the asyncio edge to do.

The edge carries them out in order. Those in :data:`Awaited` are answered by an event that names the command
(``for_``); the session waits for that reply before it asks for anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from cordon_config.model import Route

__all__ = [
    "Authenticated",
    "Awaited",
    "CloseClient",
    "Command",
    "FetchSecret",
    "InvalidateSecret",
    "LogRequest",
    "MitmStarted",
    "OpenTunnel",
    "OpenUpstream",
    "ReleaseUpstream",
    "RequestRecord",
    "RequestStarted",
    "Resolve",
    "SendClient",
    "SendUpstream",
    "Splice",
    "StartClientTLS",
]


@dataclass(slots=True)
class SendClient:
    """Write bytes to the client (then drain)."""

    data: bytes


@dataclass(slots=True)
class SendUpstream:
    """Write bytes to the leased upstream connection (then drain)."""

    data: bytes


@dataclass(slots=True)
class CloseClient:
    """Close the client connection; ``abort`` resets it instead (a broken stream must not look complete).

    ``linger``: the client is still sending a request body that was answered early (e.g. an upstream's 413):
    read and discard it until the client closes or a short idle timeout, then close. Closing at once with
    unread bytes makes the kernel reset the connection, which can destroy the answer before the client reads it.
    """

    abort: bool = False
    linger: bool = False


@dataclass(slots=True)
class StartClientTLS:
    """Terminate the client's TLS with a leaf for ``host`` (CONNECT answered 200 already); reply
    ClientTLSReady, or ClientClosed when the handshake fails."""

    host: str


@dataclass(slots=True)
class FetchSecret:
    """Fetch (or take from the TTL cache) the secret of ``route``; reply SecretReady/SecretFailed."""

    route: Route


@dataclass(slots=True)
class InvalidateSecret:
    """Drop the cached secret of a route (after an upstream 401)."""

    route_name: str


@dataclass(slots=True)
class Resolve:
    """Resolve ``host`` (no connection yet); reply Resolved/ResolveFailed."""

    host: str
    port: int


@dataclass(slots=True)
class OpenUpstream:
    """Lease an upstream connection (pooled when idle) to ``host:port``.

    ``tls_host`` set: TLS verified for that name, SNI = that name (routed hosts; ``address`` is None and
    the edge resolves ``host`` itself). ``tls_host`` None: plain TCP to the SSRF-checked ``addresses``.
    ``fresh``: do not take an idle pooled connection. Reply UpstreamConnected/UpstreamFailed.
    """

    host: str
    port: int
    tls_host: str | None
    addresses: tuple[IPv4Address | IPv6Address, ...] = ()
    fresh: bool = False


@dataclass(slots=True)
class ReleaseUpstream:
    """Done with the leased upstream connection: return it to the pool when ``reusable``, else close it."""

    reusable: bool


@dataclass(slots=True)
class OpenTunnel:
    """Open a raw TCP connection to one of the checked ``addresses`` (unrouted CONNECT); reply
    TunnelConnected/UpstreamFailed."""

    host: str
    port: int
    addresses: tuple[IPv4Address | IPv6Address, ...]


@dataclass(slots=True)
class RequestRecord:
    """The fields of one log line (never header values, query strings or bodies).

    ``bytes``: response body bytes to the client; ``bytes_up``: request body bytes to the upstream.
    ``decision`` (set for routed requests and policy refusals, which the audit log records): ``injected``
    (the secret went upstream), ``scrubbed`` (and the key was masked in, or cut from, the response),
    ``denied`` (refused by policy), ``rate-limited``, ``failed`` (not sent: secret, upstream or request
    trouble). ``scrubbed``: how many occurrences of the key were masked.
    """

    method: str
    host: str
    path: str
    route: str | None = None
    token: str | None = None
    status: int = 0
    bytes: int = 0
    error: str | None = None
    decision: str | None = None
    bytes_up: int = 0
    scrubbed: int = 0


@dataclass(slots=True)
class Splice:
    """Relay bytes both ways between the client and a peer until both sides close.

    The peer is the tunnel of the last OpenTunnel, or (``upstream``) the leased upstream connection after a
    WebSocket ``101``. ``leftover`` are client bytes already read for the peer, ``to_client`` peer bytes
    already read for the client. ``record`` is logged at the end.
    """

    leftover: bytes
    record: RequestRecord = field(default_factory=lambda: RequestRecord("CONNECT", "", ""))
    to_client: bytes = b""
    upstream: bool = False


@dataclass(slots=True)
class RequestStarted:
    """A request head was accepted (the edge starts its duration clock)."""


@dataclass(slots=True)
class MitmStarted:
    """The client's TLS for a routed host is up and its SNI checked: requests inside get ``route``'s secret.

    Logged once per tunnel at info level (``MITM: injecting credentials route=… host=…``, the line the Codex
    guide tells users to look for)."""

    host: str
    route: str


@dataclass(slots=True)
class Authenticated:
    """The client proved a valid proxy token, named ``token_name``, on this connection (a CONNECT, or a request
    on the plain listener). Every request of a MITM tunnel runs under the token of its CONNECT."""

    token_name: str


@dataclass(slots=True)
class LogRequest:
    """The request is finished: log one line."""

    record: RequestRecord


Command = (
    SendClient
    | SendUpstream
    | CloseClient
    | StartClientTLS
    | FetchSecret
    | InvalidateSecret
    | Resolve
    | OpenUpstream
    | ReleaseUpstream
    | OpenTunnel
    | Splice
    | RequestStarted
    | MitmStarted
    | Authenticated
    | LogRequest
)

Awaited = FetchSecret | Resolve | OpenUpstream | OpenTunnel | StartClientTLS
"""The commands answered by a reply event (:data:`~cordon_proxy.core.events.Reply`)."""
