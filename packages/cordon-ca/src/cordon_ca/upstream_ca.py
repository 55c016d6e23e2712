"""A CA for a local upstream that cordon talks *to* (the demo's echo server), never mistaken for a cordon CA.

The proxy refuses any upstream chain that ends at a cordon CA (:mod:`cordon_ca.recognise`), so a stand-in
upstream needs a CA of its own with another name: ``O=<name>, CN=<name>``. Its leaves are issued with
:meth:`~cordon_ca.CertificateAuthority.issue_leaf` like any other.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cordon_config.files import atomic_write, ensure_private_dir
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cordon_ca.authority import CertificateAuthority
from cordon_ca.recognise import CORDON_CA_ORGANIZATION

__all__ = ["create_upstream_ca"]

VALIDITY = dt.timedelta(days=30)


def create_upstream_ca(cert_path: Path, key_path: Path, *, name: str) -> CertificateAuthority:
    """Make and write (cert 0644, key 0600) a CA named ``name`` for a stand-in upstream."""
    if name == CORDON_CA_ORGANIZATION:
        raise ValueError("an upstream CA must not carry cordon's name")
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
                         x509.NameAttribute(NameOID.COMMON_NAME, name[:64])])
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    now = dt.datetime.now(dt.UTC)
    usage = x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    for path in (cert_path, key_path):
        ensure_private_dir(Path(path).parent)
    atomic_write(Path(key_path), key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()), mode=0o600)
    atomic_write(Path(cert_path), cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CertificateAuthority(cert, key, cert_path=Path(cert_path), key_path=Path(key_path))
