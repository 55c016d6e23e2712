"""The combined CA bundle: the system trust store followed by the cordon CA (for SSL_CERT_FILE & co)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from cordon_config.files import atomic_write, ensure_private_dir
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from cordon_ca.errors import BundleError

# First existing wins. Debian/Ubuntu/Arch/Gentoo, Fedora/RHEL, RHEL 7+ extracted, openSUSE, OpenELEC,
# Alpine/macOS/BSD, FreeBSD, then Homebrew's OpenSSL on macOS.
SYSTEM_BUNDLE_PATHS: tuple[str, ...] = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/ssl/cert.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/opt/homebrew/etc/openssl@3/cert.pem",
    "/usr/local/etc/openssl@3/cert.pem",
    "/usr/local/etc/openssl/cert.pem",
)


def _certifi_where() -> str | None:
    try:
        import certifi  # optional: only a last resort
    except ImportError:
        return None
    return certifi.where()


def find_system_bundle(candidates: Sequence[str | os.PathLike[str]] | None = None) -> Path | None:
    """The first existing, non-empty system CA bundle; ``certifi``'s only when none exists; else None."""
    for candidate in SYSTEM_BUNDLE_PATHS if candidates is None else candidates:
        path = Path(candidate)
        try:
            if path.is_file() and path.stat().st_size > 0:
                return path
        except OSError:
            continue
    where = _certifi_where()
    return Path(where) if where else None


def write_combined_bundle(
    ca_cert_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    system_bundle: str | os.PathLike[str] | None = None,
    candidates: Sequence[str | os.PathLike[str]] | None = None,
) -> Path:
    """Write ``out_path`` = system trust store + the CA at ``ca_cert_path``, atomically, mode 0644.

    ``system_bundle`` forces the store to use; otherwise the first of ``candidates`` (default
    :data:`SYSTEM_BUNDLE_PATHS`) that exists, ``certifi`` as last resort. Raises BundleError.
    """
    ca_path, out = Path(ca_cert_path), Path(out_path)
    try:
        ca_pem = ca_path.read_bytes()
        cert = x509.load_pem_x509_certificate(ca_pem)
    except FileNotFoundError:
        raise BundleError(f"no CA certificate at {ca_path}", "create one with: cordon ca generate") from None
    except (OSError, ValueError):
        raise BundleError(f"{ca_path} is not a readable PEM certificate") from None
    source = Path(system_bundle) if system_bundle is not None else find_system_bundle(candidates)
    if source is None:
        raise BundleError(
            "no system CA bundle found (looked in the usual Linux and macOS paths; certifi not installed)",
            "install your distribution's ca-certificates package",
        )
    try:
        system_pem = source.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read system CA bundle {source}: {exc.strerror}") from None
    if system_pem and not system_pem.endswith(b"\n"):
        system_pem += b"\n"
    label = cert.subject.rfc4514_string().replace("\n", " ")
    own = cert.public_bytes(serialization.Encoding.PEM)
    payload = system_pem + f"\n# {label} (added by cordon; system store: {source})\n".encode() + own
    ensure_private_dir(out.parent)
    atomic_write(out, payload, mode=0o644)
    return out
