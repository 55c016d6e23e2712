"""The host a leaf is issued for (a DNS name or an IP literal), in cordon's one canonical form
(:func:`cordon_config.hosts.canonical_leaf_host`), and its SubjectAlternativeName entry."""

from __future__ import annotations

import ipaddress

from cordon_config.hosts import canonical_leaf_host
from cryptography import x509

from cordon_ca.errors import HostNotAllowed


def normalize_host(host: str) -> str:
    """:func:`~cordon_config.hosts.canonical_leaf_host`, raising HostNotAllowed for an invalid host."""
    try:
        return canonical_leaf_host(host)
    except ValueError as exc:
        raise HostNotAllowed(str(exc)) from None




def general_name(host: str) -> x509.GeneralName:
    """The SubjectAlternativeName entry for a normalised host."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)
