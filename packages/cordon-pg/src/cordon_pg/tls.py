"""TLS for listeners: cordon's certificate towards clients, verify-full towards the server, channel binding.

* Client leg: a leaf for ``localhost`` (and ``127.0.0.1`` when the CA may sign IP addresses) from the scope's
  CA, through a ``cordon_ca.LeafContextCache`` of its own (renewed before expiry), ALPN ``postgresql``.
  A client that sends SNI ``localhost`` gets the name; one without SNI (``host=127.0.0.1``) the address.
* Upstream leg: ``cordon_proxy.upstream.client_context`` (the system store plus ``[tls] upstream_ca_file``,
  never the environment, never a cordon CA: the same trust as the HTTP proxy), with ALPN ``postgresql``.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from cordon_ca import CertificateAuthority, HostNotAllowed, LeafContextCache

from cordon_pg.scram import server_end_point_hash

__all__ = ["ClientTLS", "binding_of", "upstream_context"]

ALPN = ["postgresql"]
LOCAL_NAMES = ("localhost", "127.0.0.1")


def upstream_context(upstream_ca_file: Path | None) -> ssl.SSLContext:
    """The verifying client context for PostgreSQL servers (the HTTP proxy's trust, PostgreSQL's ALPN)."""
    from cordon_proxy.upstream import client_context

    ctx = client_context(upstream_ca_file)
    ctx.set_alpn_protocols(ALPN)
    return ctx


class ClientTLS:
    """Server-side contexts presenting cordon's certificate for the loopback names the CA may sign."""

    def __init__(self, ca: CertificateAuthority) -> None:
        self.names = [name for name in LOCAL_NAMES if _allowed(ca, name)]
        if "localhost" not in self.names:
            raise HostNotAllowed(
                "the CA's name constraints do not permit localhost, which listeners with client TLS need",
                "restart cordon (it re-issues the CA with localhost permitted), or set client_tls = \"disable\"",
            )
        self._cache = LeafContextCache(ca, maxsize=len(self.names), allowed_hosts=self.names)

    def context(self) -> ssl.SSLContext:
        """The context for a new handshake (SNI ``localhost`` or none)."""
        ctx = self._get("localhost")
        if "127.0.0.1" in self.names:
            by_address = self._get("127.0.0.1")

            def choose(tls_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> None:
                if server_name is None:
                    tls_object.context = by_address

            ctx.sni_callback = choose
        return ctx

    def _get(self, name: str) -> ssl.SSLContext:
        ctx = self._cache.get(name)
        ctx.set_alpn_protocols(ALPN)
        return ctx


def _allowed(ca: CertificateAuthority, name: str) -> bool:
    try:
        ca.check_host(name)
    except HostNotAllowed:
        return False
    return True


def binding_of(ssl_object: Any) -> bytes | None:
    """The tls-server-end-point channel binding data of the server certificate on ``ssl_object``."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm

    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        return None
    try:
        algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
    except (UnsupportedAlgorithm, ValueError):
        return None
    return server_end_point_hash(der, algorithm.name if algorithm is not None else None)
