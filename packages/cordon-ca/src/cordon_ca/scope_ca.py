"""The scope's CA as its config wants it: created when missing, and, with ``[tls] name_constraints = true``,
re-issued whenever its permitted hosts are not exactly the routed hosts (old files kept as ``.bak``).

Called by ``cordon start`` (cordon-proxy), ``cordon setup`` (cordon-setup) and, through the
``cordon.routes_changed`` entry-point group, by ``cordon route add|edit|remove`` (cordon-config, which imports
no cordon-ca code). The running proxy keeps the CA it loaded until it restarts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cordon_ca.authority import CertificateAuthority, ensure_ca_matches, load_or_create_ca
from cordon_ca.bundle import write_combined_bundle

__all__ = ["ensure_scope_ca", "on_routes_changed"]

PathLike = str | os.PathLike[str]


def ensure_scope_ca(
    cert_path: PathLike,
    key_path: PathLike,
    *,
    namespace: str,
    permitted_hosts: Iterable[str] | None,
    bundle: PathLike | None = None,
) -> tuple[CertificateAuthority, bool]:
    """(the CA, whether it was written now). ``permitted_hosts`` None: any existing CA is kept as it is (an
    unconstrained one is created when missing); a collection: the CA must permit exactly those hosts. When the
    CA was written and ``bundle`` is given, that combined bundle is rebuilt with it."""
    if permitted_hosts is None:
        existed = Path(cert_path).exists() and Path(key_path).exists()
        ca = load_or_create_ca(cert_path, key_path, namespace=namespace)
        changed = not existed
    else:
        changed = ensure_ca_matches(cert_path, key_path, namespace=namespace, permitted_hosts=permitted_hosts)
        ca = CertificateAuthority.load(cert_path, key_path)
    if changed and bundle is not None:
        write_combined_bundle(cert_path, bundle)
    return ca, changed


def on_routes_changed(paths: Any, config: Any) -> Sequence[str]:
    """The ``cordon.routes_changed`` hook: ``paths`` is the scope's ``ScopePaths``, ``config`` the new
    ``Config``. Re-issues a name-constrained CA for the new route set; returns the lines to print."""
    tls = config.tls
    if not (tls.enabled and tls.name_constraints):
        return []
    cert = Path(tls.ca_cert_path or paths.ca_cert)
    key = Path(tls.ca_key_path or paths.ca_key)
    if not (cert.exists() and key.exists()):
        return []  # `cordon setup` and `cordon start` create it, constrained
    bundle = Path(paths.combined_bundle)
    hosts = sorted({route.host for route in config.routes})
    _, changed = ensure_scope_ca(cert, key, namespace=paths.namespace, permitted_hosts=hosts,
                                 bundle=bundle if bundle.exists() else None)
    if not changed:
        return []
    lines = [f"re-issued the name-constrained CA for {', '.join(hosts) or 'no host'}: {cert} (old files kept as .bak)"]
    if bundle.exists():
        lines.append(f"rebuilt the combined CA bundle: {bundle}")
    lines.append("restart cordon, and the agents so they load the new bundle")
    return lines
