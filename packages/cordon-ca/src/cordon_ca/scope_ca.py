"""The scope's CA as its config wants it: name-constrained to exactly the routed hosts by default (created
permitting no host at all until the first route), re-issued whenever its permitted hosts are not exactly the
routed hosts; the replaced key is destroyed. ``[tls] name_constraints = false`` opts out; with the key unset, a
CA made without constraints (cordon 0.1) is kept until ``cordon ca generate --force`` (doctor warns).

Called by ``cordon start`` (cordon-proxy), ``cordon setup`` (cordon-setup) and, through the
``cordon.routes_changed`` entry-point group, by ``cordon route add|edit|remove`` (cordon-config, which imports
no cordon-ca code). The running proxy keeps the CA it loaded until it restarts.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from cordon_ca.authority import (
    CertificateAuthority,
    _canonical_permitted,
    ensure_ca_matches,
    load_or_create_ca,
)
from cordon_ca.bundle import write_combined_bundle

__all__ = ["ca_matches", "ensure_scope_ca", "on_routes_changed", "permitted_for"]

PathLike = str | os.PathLike[str]


def permitted_for(name_constraints: bool | None, hosts: Iterable[str]) -> list[str] | None:
    """The hosts the scope's CA must permit: the routed ``hosts`` unless ``[tls] name_constraints = false``
    (None: unconstrained). The one place that decides it (start, setup, the route hook, ``cordon ca``)."""
    return None if name_constraints is False else sorted(set(hosts))


def ca_matches(ca: CertificateAuthority, permitted_hosts: Iterable[str] | None, *,
               keep_unconstrained: bool = False) -> bool:
    """Whether ``ca``'s name constraints are exactly ``permitted_hosts`` (None: unconstrained), compared as
    cordon-ca normalises host names (case, trailing dot, IDN), with every subdomain excluded.
    ``keep_unconstrained``: an unconstrained CA counts as matching (``name_constraints`` unset: it is kept, and
    doctor warns)."""
    if keep_unconstrained and ca.permitted_hosts is None:
        return True
    wanted = _canonical_permitted(permitted_hosts)
    return ca.permitted_hosts == wanted and (wanted is None or ca.exact_constraints)


def ensure_scope_ca(
    cert_path: PathLike,
    key_path: PathLike,
    *,
    namespace: str,
    permitted_hosts: Iterable[str] | None,
    bundle: PathLike | None = None,
    keep_unconstrained: bool = False,
) -> tuple[CertificateAuthority, bool]:
    """(the CA, whether it was written now). The CA is made to match the config: ``permitted_hosts`` None means
    unconstrained (a constrained CA is re-issued without constraints), a collection means exactly those hosts
    (see :func:`ca_matches` for ``keep_unconstrained``). Created when missing. The lock is taken only to write,
    so a CA in a directory the user cannot write still loads when it matches. An existing ``bundle`` that does
    not hold this CA is rebuilt (a missing one is ``cordon setup``'s to write)."""
    cert, key = Path(cert_path), Path(key_path)
    changed = False
    if cert.exists() and key.exists():
        ca = CertificateAuthority.load(cert, key)
        if not ca_matches(ca, permitted_hosts, keep_unconstrained=keep_unconstrained):
            changed = ensure_ca_matches(cert, key, namespace=namespace, permitted_hosts=permitted_hosts)
            ca = CertificateAuthority.load(cert, key)
    else:
        ca = load_or_create_ca(cert, key, namespace=namespace, permitted_hosts=permitted_hosts)
        changed = True
    if bundle is not None and Path(bundle).exists() and not _bundle_holds(Path(bundle), cert):
        write_combined_bundle(cert, bundle)  # also after a re-issue whose bundle write failed last time
    return ca, changed


def _bundle_holds(bundle: Path, cert: Path) -> bool:
    try:
        return cert.read_bytes().strip() in bundle.read_bytes()
    except FileNotFoundError:
        return False


def on_routes_changed(paths: Any, config: Any) -> Sequence[str]:
    """The ``cordon.routes_changed`` hook: ``paths`` is the scope's ``ScopePaths``, ``config`` the new
    ``Config`` (its approved routes). Re-issues a name-constrained CA for the new host set
    (``Config.tls_hosts()``: the routed hosts, and ``localhost`` while a listener offers TLS to its clients);
    returns the lines to print."""
    tls = config.tls
    if not tls.enabled:
        return []
    cert = Path(tls.ca_cert_path or paths.ca_cert)
    key = Path(tls.ca_key_path or paths.ca_key)
    if not (cert.exists() and key.exists()):
        return []  # `cordon setup` and `cordon start` create it as the config says
    tls_hosts = getattr(config, "tls_hosts", None)  # cordon_config.Config; a bare stand-in has routes only
    hosts = permitted_for(tls.name_constraints, tls_hosts() if tls_hosts is not None
                          else (route.host for route in config.routes))
    bundle = Path(paths.combined_bundle)
    _, changed = ensure_scope_ca(cert, key, namespace=paths.namespace, permitted_hosts=hosts, bundle=bundle,
                                 keep_unconstrained=tls.name_constraints is None)
    if not changed:
        return []
    what = (f"the name-constrained CA for {', '.join(hosts) or 'no host'}" if hosts is not None
            else "the CA without name constraints")
    lines = [f"re-issued {what}: {cert} (the old key is destroyed)"]
    if bundle.exists():
        lines.append(f"rebuilt the combined CA bundle: {bundle}")
    lines.append("restart cordon, and the agents so they load the new bundle (after `cordon trust`, run it again)")
    return lines
