"""Client-facing TLS for MITM'd tunnels: a leaf context per routed host from ``cordon_ca.LeafContextCache``.

Each host's context gets an SNI callback that refuses a ClientHello without SNI or with another name
(SECURITY.md A.2: CONNECT host == SNI) and records the name on the TLS object, which the edge reports to the
session as :class:`~cordon_proxy.core.events.ClientTLSReady`.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from cordon_ca import CertificateAuthority, LeafContextCache

from cordon_proxy.core.routing import same_host

__all__ = ["LeafContexts", "sni_of"]

_SNI_ATTR = "cordon_sni"


def _sni_guard(host: str) -> Callable[[Any, str | None, ssl.SSLContext], int | None]:
    def callback(tls_object: Any, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
        try:
            setattr(tls_object, _SNI_ATTR, server_name)
        except AttributeError:
            pass
        if server_name is None or not same_host(server_name, host):
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        return None

    return callback


def sni_of(tls_object: object | None) -> str | None:
    """The server name the client sent, as recorded by the SNI callback (None when absent)."""
    return getattr(tls_object, _SNI_ATTR, None) if tls_object is not None else None


class LeafContexts:
    """Server contexts for the routed hosts, each guarded by an SNI check for its own host."""

    def __init__(self, ca: CertificateAuthority, hosts: Iterable[str], maxsize: int = 256) -> None:
        self.cache = LeafContextCache(ca, maxsize=maxsize, allowed_hosts=list(hosts))
        self._guarded: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()

    def get(self, host: str) -> ssl.SSLContext:
        """The context presenting a leaf for ``host``; raises ``cordon_ca`` errors for other hosts."""
        ctx = self.cache.get(host)
        if ctx not in self._guarded:
            ctx.sni_callback = _sni_guard(host)
            self._guarded.add(ctx)
        return ctx
