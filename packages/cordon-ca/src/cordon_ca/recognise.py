"""Recognising a cordon CA certificate, of any scope, by the subject every cordon CA carries.

Every CA cordon has ever created is named ``O=cordon, CN=cordon local CA <namespace>``. A chain that ends at such
a CA is never good enough for an upstream: only the scope's own proxy should hold a key that mints for it.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

__all__ = ["CORDON_CA_CN_PREFIX", "CORDON_CA_ORGANIZATION", "der_bundle", "is_cordon_ca", "split_cordon_cas"]

CORDON_CA_ORGANIZATION = "cordon"
CORDON_CA_CN_PREFIX = "cordon local CA"


def is_cordon_ca(cert: x509.Certificate) -> bool:
    """True when ``cert``'s subject is a cordon CA's (``O=cordon``, CN ``cordon local CA …``)."""
    try:
        orgs = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]
        names = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    except ValueError:  # a malformed subject
        return False
    return CORDON_CA_ORGANIZATION in orgs and any(
        isinstance(n, str) and n.startswith(CORDON_CA_CN_PREFIX) for n in names
    )


def split_cordon_cas(pem: bytes) -> tuple[list[x509.Certificate], list[x509.Certificate]]:
    """The certificates of a PEM bundle as (others, cordon CAs). Raises ValueError for a malformed bundle."""
    others: list[x509.Certificate] = []
    cordon: list[x509.Certificate] = []
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        return others, cordon
    for cert in x509.load_pem_x509_certificates(pem):
        (cordon if is_cordon_ca(cert) else others).append(cert)
    return others, cordon


def der_bundle(certs: Iterable[x509.Certificate]) -> bytes:
    """``certs`` as concatenated DER (what ``ssl.SSLContext.load_verify_locations(cadata=...)`` takes)."""
    return b"".join(cert.public_bytes(Encoding.DER) for cert in certs)
