"""The validated, immutable model of a cordon.toml. Built by ``parse.py``; read by every tool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from cordon_config.hosts import canonical_host

SecretSourceName = Literal["keyring", "1password", "env", "file", "command"]
ClientTLS = Literal["accept", "require", "disable"]
UpstreamTLS = Literal["verify-full", "disable"]
DEFAULT_PG_PORT = 5432


@dataclass(frozen=True, slots=True)
class HeaderAuth:
    """Inject ``<header_name>: [<scheme> ]<secret>``."""

    header_name: str
    scheme: str | None = None


@dataclass(frozen=True, slots=True)
class BasicAuth:
    """Inject ``Authorization: Basic base64(<username>:<secret>)``."""

    username: str


Auth = HeaderAuth | BasicAuth


@dataclass(frozen=True, slots=True)
class RateLimit:
    """``[routes.limits]``: a token bucket of ``burst`` requests (default: ``requests_per_minute``) refilled at
    ``requests_per_minute`` per minute."""

    requests_per_minute: int
    burst: int | None = None

    @property
    def capacity(self) -> int:
        return self.burst if self.burst is not None else self.requests_per_minute


@dataclass(frozen=True, slots=True)
class SecretRef:
    """Where a route's secret lives: a source name and that source's fields (never the value)."""

    source: SecretSourceName
    fields: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True, slots=True)
class Route:
    """One routed host and how to authenticate to it."""

    name: str
    host: str  # canonical: lower-case, no trailing dot, IDN as punycode
    auth: Auth
    secret: SecretRef
    port: int | None = None
    allow_plain_http: bool = False
    methods: tuple[str, ...] | None = None  # [routes.match] methods: None = any method
    paths: tuple[str, ...] | None = None  # [routes.match] paths (exact, or a prefix ending in "*"): None = any
    rate_limit: RateLimit | None = None  # [routes.limits]
    scrub_responses: bool = True  # mask the injected key in responses (see docs/security.md)


@dataclass(frozen=True, slots=True)
class PasswordAuth:
    """A listener logs in to its upstream as ``username`` with the secret as the password."""

    username: str


@dataclass(frozen=True, slots=True)
class Listener:
    """One PostgreSQL credential listener: 127.0.0.1:``port`` relays to ``upstream`` after cordon logs in."""

    name: str
    port: int
    upstream_host: str  # canonical DNS name, or an IP literal (IPv6 without brackets)
    upstream_port: int
    auth: PasswordAuth
    secret: SecretRef
    client_tls: ClientTLS = "accept"
    upstream_tls: UpstreamTLS = "verify-full"

    @property
    def upstream(self) -> str:
        """``host:port`` as written in cordon.toml (IPv6 in brackets)."""
        host = f"[{self.upstream_host}]" if ":" in self.upstream_host else self.upstream_host
        return f"{host}:{self.upstream_port}"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """The ``[tls]`` table; paths are absolute (relative ones resolved against the config's directory)."""

    enabled: bool = True
    ca_cert_path: Path | None = None
    ca_key_path: Path | None = None
    upstream_ca_file: Path | None = None
    name_constraints: bool | None = None  # None: not set (new CAs are constrained; see docs/security.md)


@dataclass(frozen=True, slots=True)
class Limits:
    """The ``[limits]`` table; sizes in bytes, times in seconds."""

    header_bytes: int = 65536
    connect_timeout: float = 10.0
    idle_timeout: float = 120.0
    response_header_timeout: float = 300.0
    max_connections: int = 1024
    # with proxy tokens on: connections that have not shown a valid token yet have a cap of their own and
    # must send their first request head within first_head_timeout (a token holder is always served)
    max_unauthenticated: int = 256
    first_head_timeout: float = 5.0


@dataclass(frozen=True, slots=True)
class Egress:
    """``[egress]``: what happens to traffic for hosts without a route. ``unrouted = "tunnel"`` passes it
    (untouched, SSRF-checked); ``"deny"`` refuses every host not in ``allow`` (exact names or IP literals, or
    ``*.domain`` for any name below ``domain``)."""

    unrouted: Literal["tunnel", "deny"] = "tunnel"
    allow: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuditConfig:
    """``[audit]``: the tamper-evident log of routed requests and policy decisions in the state dir."""

    enabled: bool = True
    max_file_bytes: int = 10 * 1024 * 1024
    keep_files: int = 5


@dataclass(frozen=True, slots=True)
class Config:
    """A whole validated cordon.toml."""

    path: Path
    listen: int
    tls: TLSConfig
    routes: tuple[Route, ...] = ()
    limits: Limits = Limits()
    secret_ttl: float = 10.0
    op_path: str | None = None
    egress: Egress = Egress()
    audit: AuditConfig = AuditConfig()
    notes: tuple[str, ...] = ()  # legacy forms read (`cordon config migrate` rewrites them), one line each
    listeners: tuple[Listener, ...] = ()

    def tls_hosts(self) -> list[str]:
        """The names cordon presents certificates for, sorted: every route's host, and ``localhost`` when a
        listener offers TLS to its clients. A name-constrained CA permits exactly these."""
        hosts = {route.host for route in self.routes}
        if any(listener.client_tls != "disable" for listener in self.listeners):
            hosts.add("localhost")
        return sorted(hosts)

    def listener(self, name: str) -> Listener | None:
        """The listener called ``name``, or None."""
        for listener in self.listeners:
            if listener.name == name:
                return listener
        return None

    def route_for_host(self, host: str, port: int | None = None) -> Route | None:
        """The route for ``host`` (see :func:`route_for_host`)."""
        return route_for_host(self.routes, host, port)


def route_for_host(routes: Sequence[Route], host: str, port: int | None = None) -> Route | None:
    """The route whose host equals ``host`` after canonicalisation (and whose port matches, when the route names
    one and ``port`` is given), or None. An IP literal, in any spelling, never matches: routes are names. The
    one route lookup (``Config.route_for_host``, the proxy's session)."""
    try:
        wanted = canonical_host(host)
    except ValueError:
        return None
    for route in routes:
        if route.host == wanted and (route.port is None or port is None or route.port == port):
            return route
    return None
