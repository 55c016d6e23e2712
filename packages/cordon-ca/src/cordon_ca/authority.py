"""The local CA: creation (locked, key 0600 O_EXCL), secure loading, leaf issuance, name constraints."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shlex
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cordon_config.files import (
    PrivateFileError,
    atomic_write,
    ensure_private_dir,
    fsync_dir,
    locked,
    read_private,
    write_new_file,
)
from cordon_config.hosts import is_ip
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cordon_ca.errors import CAError, CAInvalid, CAKeyInsecure, CANotFound, HostNotAllowed
from cordon_ca.hostnames import general_name, normalize_host
from cordon_ca.shred import destroy, open_for_destroy, overwrite_and_close

CA_VALIDITY = dt.timedelta(days=3650)
LEAF_VALIDITY = dt.timedelta(days=30)
BACKDATE = dt.timedelta(hours=1)
# NameConstraints cannot say "no DNS name at all"; an empty host set permits only the reserved `invalid` TLD.
_NO_HOST_SENTINEL = "invalid"

PathLike = str | os.PathLike[str]


@dataclass(frozen=True, slots=True)
class IssuedLeaf:
    """A freshly issued leaf: PEM certificate and key plus its validity window (UTC)."""

    cert_pem: bytes
    key_pem: bytes
    not_before: dt.datetime
    not_after: dt.datetime


class CertificateAuthority:
    """A loaded CA (certificate + private key). Build it with :func:`load_or_create_ca` or :meth:`load`."""

    def __init__(
        self,
        cert: x509.Certificate,
        key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey,
        *,
        cert_path: Path | None = None,
        key_path: Path | None = None,
    ) -> None:
        self.cert = cert
        self.key = key
        self.cert_path = cert_path
        self.key_path = key_path
        self._ski = _subject_key_identifier(cert)
        self._aki = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(self._ski)
        self._permitted = _read_permitted_hosts(cert)
        self._exact = _excludes_subdomains(cert, self._permitted)
        self._not_before = cert.not_valid_before_utc
        self._not_after = cert.not_valid_after_utc

    # -- loading --------------------------------------------------------------------------------------
    @classmethod
    def load(cls, cert_path: PathLike, key_path: PathLike) -> CertificateAuthority:
        """Load a CA; refuse a key that is group/world accessible, owned by someone else, or a symlink."""
        cert_path, key_path = Path(cert_path), Path(key_path)
        try:
            cert_pem = cert_path.read_bytes()
        except FileNotFoundError:
            raise CANotFound(f"no CA certificate at {cert_path}", "create one with: cordon ca generate") from None
        except OSError as exc:
            raise CAInvalid(f"cannot read CA certificate {cert_path}: {exc.strerror}") from None
        key_pem = _read_private_key_file(key_path)
        try:
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError:
            raise CAInvalid(f"{cert_path} is not a PEM certificate", _regen_hint()) from None
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
        except (ValueError, TypeError):
            raise CAInvalid(f"{key_path} is not an unencrypted PEM private key", _regen_hint()) from None
        if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise CAInvalid(f"{key_path}: unsupported key type (need ECDSA or RSA)", _regen_hint())
        if key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ) != cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
            raise CAInvalid(f"{key_path} does not belong to the certificate {cert_path}", _regen_hint())
        try:
            constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            constraints = None
        if constraints is None or not constraints.ca:
            raise CAInvalid(f"{cert_path} is not a CA certificate (BasicConstraints CA:TRUE missing)", _regen_hint())
        try:
            return cls(cert, key, cert_path=cert_path, key_path=key_path)
        except x509.ExtensionNotFound:
            raise CAInvalid(f"{cert_path} has no SubjectKeyIdentifier", _regen_hint()) from None

    # -- properties -----------------------------------------------------------------------------------
    @property
    def cert_pem(self) -> bytes:
        """The CA certificate, PEM."""
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def subject(self) -> str:
        """The CA subject as an RFC 4514 string."""
        return self.cert.subject.rfc4514_string()

    @property
    def common_name(self) -> str:
        attrs = self.cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(attrs[0].value) if attrs else ""

    @property
    def fingerprint_sha256(self) -> str:
        """SHA-256 fingerprint, colon-separated upper-case hex (as `openssl x509 -fingerprint` prints it)."""
        return ":".join(f"{b:02X}" for b in self.cert.fingerprint(hashes.SHA256()))

    @property
    def not_before(self) -> dt.datetime:
        return self._not_before

    @property
    def not_after(self) -> dt.datetime:
        return self._not_after

    @property
    def key_type(self) -> str:
        """Human description of the CA key, e.g. ``ECDSA P-256``."""
        if isinstance(self.key, ec.EllipticCurvePrivateKey):
            curve = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}.get(
                self.key.curve.name, self.key.curve.name
            )
            return f"ECDSA {curve}"
        return f"RSA-{self.key.key_size}"

    @property
    def permitted_hosts(self) -> frozenset[str] | None:
        """The DNS names the CA's NameConstraints permit, or None when the CA is unconstrained."""
        return self._permitted

    @property
    def exact_constraints(self) -> bool:
        """True when the constraints permit exactly the permitted hosts: each one's subdomains (``.host``) are
        excluded too. A CA from cordon 0.1 permitted ``evil.api.example.com`` under ``api.example.com``."""
        return self._exact

    # -- leaves ---------------------------------------------------------------------------------------
    def check_host(self, host: str) -> str:
        """Normalise ``host`` and check it against the CA's name constraints; raise HostNotAllowed."""
        name = normalize_host(host)
        if self._permitted is not None and name not in self._permitted:
            raise HostNotAllowed(
                f"host {name} is outside this CA's name constraints",
                "add a route for it; the CA is re-issued for the new host set on the next start",
            )
        return name

    def issue_leaf(self, host: str) -> tuple[bytes, bytes]:
        """Issue a leaf for ``host`` (DNS name or IP): returns ``(cert_pem, key_pem)``."""
        leaf = self.issue(host)
        return leaf.cert_pem, leaf.key_pem

    def issue(
        self, host: str, *, now: dt.datetime | None = None, key_format: Literal["pkcs8", "traditional"] = "pkcs8"
    ) -> IssuedLeaf:
        """Issue a leaf for ``host`` with its validity window; refuses hosts outside the name constraints.

        ``key_format="traditional"`` writes the key as ``EC PRIVATE KEY``, which OpenSSL 3.0 loads faster.
        """
        return self._sign_leaf(self.check_host(host), now=now, key_format=key_format)

    def _sign_leaf(
        self, name: str, *, now: dt.datetime | None = None, key_format: Literal["pkcs8", "traditional"] = "pkcs8"
    ) -> IssuedLeaf:
        now = now or dt.datetime.now(dt.UTC)
        if now >= self._not_after:
            raise CAError(f"the CA expired on {self._not_after:%Y-%m-%d}", _regen_hint())
        not_before = max(now - BACKDATE, self._not_before)
        not_after = min(now + LEAF_VALIDITY, self._not_after)
        key = ec.generate_private_key(ec.SECP256R1())
        public = key.public_key()
        subject = (
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]) if len(name) <= 64 else x509.Name([])
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.SubjectAlternativeName([general_name(name)]), critical=not subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_LEAF_KEY_USAGE, critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(self._aki, critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        )
        cert = builder.sign(self.key, hashes.SHA256())
        fmt = (
            serialization.PrivateFormat.TraditionalOpenSSL
            if key_format == "traditional"
            else serialization.PrivateFormat.PKCS8
        )
        return IssuedLeaf(
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()),
            not_before,
            not_after,
        )

    def __repr__(self) -> str:
        return f"CertificateAuthority({self.common_name!r}, cert_path={str(self.cert_path)!r})"


_LEAF_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=False,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)
_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=False,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _regen_hint() -> str:
    return "replace it with: cordon ca generate --force (the old key is destroyed)"


def _subject_key_identifier(cert: x509.Certificate) -> x509.SubjectKeyIdentifier:
    return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value


def _read_permitted_hosts(cert: x509.Certificate) -> frozenset[str] | None:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    except x509.ExtensionNotFound:
        return None
    names = {
        str(sub.value).lower()
        for sub in constraints.permitted_subtrees or ()
        if isinstance(sub, x509.DNSName) and sub.value != _NO_HOST_SENTINEL
    }
    return frozenset(names)


def _excludes_subdomains(cert: x509.Certificate, permitted: frozenset[str] | None) -> bool:
    if permitted is None:
        return False
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints).value
    excluded = {str(sub.value).lower() for sub in constraints.excluded_subtrees or ()
                if isinstance(sub, x509.DNSName)}
    return all(f".{host}" in excluded for host in permitted)


def _read_private_key_file(key_path: Path) -> bytes:
    """The key's bytes, read as every private file cordon reads (:func:`cordon_config.files.read_private`: no
    symlink, ours, 0600), with the CA's own messages."""
    quoted = shlex.quote(str(key_path))
    try:
        data = read_private(key_path)
    except PrivateFileError as exc:
        if exc.kind == "symlink":
            raise CAKeyInsecure(f"CA key {key_path} is a symlink; refusing to follow it",
                                f"put the key file itself there and run: chmod 600 {quoted}") from None
        if exc.kind == "unreadable":
            raise CAInvalid(f"cannot read CA key {key_path}: {exc.strerror}") from None
        if exc.kind == "not-regular":
            raise CAKeyInsecure(f"CA key {key_path} is not a regular file") from None
        if exc.kind == "not-owner":
            raise CAKeyInsecure(f"CA key {key_path} is owned by uid {exc.uid}, not by you (uid {os.geteuid()})",
                                f"chown {os.geteuid()} {quoted} && chmod 600 {quoted}") from None
        raise CAKeyInsecure(f"CA key {key_path} is accessible by group/others (mode {exc.mode or 0:04o})",
                            f"chmod 600 {quoted}") from None
    if data is None:
        raise CANotFound(f"no CA key at {key_path}", "create one with: cordon ca generate")
    return data


def _canonical_permitted(permitted_hosts: Iterable[str] | None) -> frozenset[str] | None:
    if permitted_hosts is None:
        return None
    if isinstance(permitted_hosts, str):
        raise TypeError("permitted_hosts must be a collection of host names, not a string")
    hosts = frozenset(normalize_host(h) for h in permitted_hosts)
    ips = sorted(h for h in hosts if is_ip(h))
    if ips:
        raise HostNotAllowed(
            f"name constraints exclude every IP address; cannot permit {', '.join(ips)}",
            "route IP literals only with name constraints off",
        )
    return hosts


def build_ca(
    namespace: str, permitted_hosts: Iterable[str] | None = None, *, now: dt.datetime | None = None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """Generate a new CA certificate and key in memory (nothing is written)."""
    hosts = _canonical_permitted(permitted_hosts)
    now = now or dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "cordon"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"cordon local CA {namespace}"[:64]),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
    )
    if hosts is not None:
        # "api.example.com" permits the host and every name below it (RFC 5280); the excluded ".api.example.com"
        # (OpenSSL: names that end with it) takes the subdomains back out, so exactly the host is left.
        names = sorted(hosts) or [_NO_HOST_SENTINEL]
        permitted = [x509.DNSName(h) for h in names]
        excluded: list[x509.GeneralName] = [x509.DNSName(f".{h}") for h in names]
        excluded += [
            x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
            x509.IPAddress(ipaddress.ip_network("::/0")),
        ]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded), critical=True
        )
    return builder.sign(key, hashes.SHA256()), key


def legacy_key_backup(key_path: Path) -> Path:
    """``<key>.bak``: the copy of the old CA key that cordon 0.1 kept on every re-issue (a CA key all the same)."""
    return key_path.with_name(key_path.name + ".bak")


def _write_ca(cert_path: Path, key_path: Path, namespace: str, permitted: Iterable[str] | None) -> CertificateAuthority:
    """Generate and write a CA (caller holds the lock). Key: temp file O_CREAT|O_EXCL|O_NOFOLLOW 0600, rename.

    A key it replaces is destroyed: its bytes are overwritten through an fd opened before the rename (so the
    CA is never left without a key), and a ``.bak`` copy left by cordon 0.1 is overwritten and unlinked.
    """
    cert, key = build_ca(namespace, permitted)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    tmp = write_new_file(key_path.parent, key_pem, mode=0o600, prefix=key_path.name)
    old_key = open_for_destroy(key_path)
    try:
        os.replace(tmp, key_path)
    except BaseException:
        os.unlink(tmp)
        if old_key is not None:
            os.close(old_key)
        raise
    if old_key is not None:
        overwrite_and_close(old_key)
    destroy(legacy_key_backup(key_path))
    fsync_dir(key_path.parent)
    atomic_write(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return CertificateAuthority(cert, key, cert_path=cert_path, key_path=key_path)


def _prepare(cert_path: PathLike, key_path: PathLike) -> tuple[Path, Path]:
    cert_path, key_path = Path(cert_path).absolute(), Path(key_path).absolute()
    ensure_private_dir(key_path.parent)
    ensure_private_dir(cert_path.parent)
    return cert_path, key_path


def _half_present(cert_path: Path, key_path: Path) -> CAInvalid:
    present, absent = (cert_path, key_path) if cert_path.exists() else (key_path, cert_path)
    return CAInvalid(
        f"{present} exists but {absent} does not; refusing to overwrite half a CA",
        "move the leftover file away, or run: cordon ca generate --force",
    )


def load_or_create_ca(
    cert_path: PathLike,
    key_path: PathLike,
    *,
    namespace: str,
    permitted_hosts: Iterable[str] | None = None,
) -> CertificateAuthority:
    """Load the CA at these paths, or create it (under a file lock, so concurrent callers end with one CA).

    ``permitted_hosts`` applies only when a new CA is created (see :func:`ensure_ca_matches` to re-issue).
    """
    cert_p, key_p = Path(cert_path), Path(key_path)
    if cert_p.exists() and key_p.exists():
        return CertificateAuthority.load(cert_p, key_p)
    cert_p, key_p = _prepare(cert_p, key_p)
    with locked(key_p):
        if cert_p.exists() and key_p.exists():
            return CertificateAuthority.load(cert_p, key_p)
        if cert_p.exists() or key_p.exists():
            raise _half_present(cert_p, key_p)
        return _write_ca(cert_p, key_p, namespace, permitted_hosts)


def regenerate_ca(
    cert_path: PathLike,
    key_path: PathLike,
    *,
    namespace: str,
    permitted_hosts: Iterable[str] | None = None,
) -> CertificateAuthority:
    """Replace the CA with a new one; the old key is destroyed (overwritten and unlinked, never kept)."""
    hosts = _canonical_permitted(permitted_hosts)
    cert_p, key_p = _prepare(cert_path, key_path)
    with locked(key_p):
        return _write_ca(cert_p, key_p, namespace, hosts)


def ensure_ca_matches(
    cert_path: PathLike,
    key_path: PathLike,
    *,
    namespace: str,
    permitted_hosts: Iterable[str] | None,
) -> bool:
    """Make the CA's name constraints equal ``permitted_hosts`` (None: unconstrained); True if it changed.

    Creates the CA when missing; re-issues it when the host set differs or a constrained CA still permits
    subdomains (the old key is destroyed).
    """
    wanted = _canonical_permitted(permitted_hosts)
    cert_p, key_p = _prepare(cert_path, key_path)
    with locked(key_p):
        if not cert_p.exists() and not key_p.exists():
            _write_ca(cert_p, key_p, namespace, wanted)
            return True
        if not (cert_p.exists() and key_p.exists()):
            raise _half_present(cert_p, key_p)
        current = CertificateAuthority.load(cert_p, key_p)
        if current.permitted_hosts == wanted and (wanted is None or current.exact_constraints):
            return False
        _write_ca(cert_p, key_p, namespace, wanted)
        return True
