"""Leaf profile, and every generated chain through real verifiers and real TLS clients."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cordon_ca import CertificateAuthority, HostNotAllowed, load_or_create_ca, server_context
from cordon_testing.tls import curl_get, have, node_get, openssl_verify, python_handshake, serving, write_pem
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

HOSTS = ["api.test", "127.0.0.1", "::1", "xn--bcher-kva.test"]


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return load_or_create_ca(tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem", namespace="leaf-test")


@pytest.fixture
def other_ca(tmp_path: Path) -> CertificateAuthority:
    return load_or_create_ca(tmp_path / "other/ca-cert.pem", tmp_path / "other/ca-key.pem", namespace="other")


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@pytest.mark.parametrize("host", HOSTS)
def test_leaf_profile(ca: CertificateAuthority, host: str) -> None:
    before = dt.datetime.now(dt.UTC)
    cert_pem, key_pem = ca.issue_leaf(host)
    cert = x509.load_pem_x509_certificate(cert_pem)
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert cert.issuer == ca.cert.subject
    assert cert.public_key() == key.public_key()
    assert key.public_key() != ca.key.public_key()
    assert key.curve.name == "secp256r1"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [_san(host)]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and not bc.value.ca
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    assert aki.key_identifier == ski.digest
    assert cert.not_valid_before_utc >= ca.cert.not_valid_before_utc
    assert cert.not_valid_before_utc >= before.replace(microsecond=0) - dt.timedelta(hours=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc <= dt.timedelta(days=30, hours=1)
    assert cert.not_valid_after_utc - before >= dt.timedelta(days=29)


def test_random_serials_and_fresh_keys(ca: CertificateAuthority) -> None:
    leaves = [ca.issue_leaf("api.test") for _ in range(5)]
    serials = {x509.load_pem_x509_certificate(c).serial_number for c, _ in leaves}
    assert len(serials) == 5
    assert all(s.bit_length() > 64 for s in serials)


def test_host_normalisation_and_invalid_hosts(ca: CertificateAuthority) -> None:
    cert = x509.load_pem_x509_certificate(ca.issue_leaf("API.Test.")[0])
    assert list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [
        x509.DNSName("api.test")
    ]
    cert = x509.load_pem_x509_certificate(ca.issue_leaf("bücher.test")[0])
    assert x509.DNSName("xn--bcher-kva.test") in cert.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value
    for bad in ["", "bad host", "a..b", "-x.test", " api.test", "*.test"]:
        with pytest.raises(HostNotAllowed):
            ca.issue_leaf(bad)


def _verifier_ok(ca: CertificateAuthority, leaf_pem: bytes, host: str) -> bool:
    leaf = x509.load_pem_x509_certificate(leaf_pem)
    verifier = PolicyBuilder().store(Store([ca.cert])).build_server_verifier(_san(host))
    try:
        verifier.verify(leaf, [])
    except VerificationError:
        return False
    return True


@pytest.mark.parametrize("host", HOSTS)
def test_chain_passes_openssl_strict_and_cryptography_verifier(
    ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path, host: str
) -> None:
    cert_pem, _ = ca.issue_leaf(host)
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    other_file = write_pem(tmp_path / "other.pem", other_ca.cert_pem)
    leaf_file = write_pem(tmp_path / "leaf.pem", cert_pem)
    ok = openssl_verify(ca_file, leaf_file, host)
    assert ok.returncode == 0 and ok.stdout.strip().endswith(": OK"), ok.stdout + ok.stderr
    wrong_host = "wrong.test" if not host[0].isdigit() and ":" not in host else "127.0.0.2"
    assert openssl_verify(ca_file, leaf_file, wrong_host).returncode != 0
    assert openssl_verify(other_file, leaf_file, host).returncode != 0
    assert _verifier_ok(ca, cert_pem, host)
    assert not _verifier_ok(ca, cert_pem, wrong_host)
    assert not _verifier_ok(other_ca, cert_pem, host)


def test_ca_itself_passes_openssl_strict(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    result = openssl_verify(ca_file, ca_file)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture
def served(ca: CertificateAuthority, tmp_path: Path):
    cert_pem, key_pem = ca.issue_leaf("api.test")
    with serving(server_context(cert_pem, key_pem)) as server:
        yield server


@pytest.fixture
def ca_files(ca: CertificateAuthority, other_ca: CertificateAuthority, tmp_path: Path) -> tuple[Path, Path]:
    return write_pem(tmp_path / "ca.pem", ca.cert_pem), write_pem(tmp_path / "other.pem", other_ca.cert_pem)


def test_python_ssl_handshake(served, ca_files: tuple[Path, Path]) -> None:
    good, wrong = ca_files
    assert python_handshake(served.port, "api.test", good, alpn=["h2", "http/1.1"]) == "http/1.1"
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|match"):
        python_handshake(served.port, "wrong.test", good)
    with pytest.raises(ssl.SSLCertVerificationError, match=r"unable to get local issuer|self.signed"):
        python_handshake(served.port, "api.test", wrong)


def test_python_ssl_handshake_ip_leaf(ca: CertificateAuthority, ca_files: tuple[Path, Path]) -> None:
    good, _ = ca_files
    with serving(server_context(*ca.issue_leaf("127.0.0.1"))) as server:
        python_handshake(server.port, "127.0.0.1", good)
        with pytest.raises(ssl.SSLCertVerificationError):
            python_handshake(server.port, "api.test", good)


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_curl_handshake(served, ca_files: tuple[Path, Path]) -> None:
    good, wrong = ca_files
    ok = curl_get(served.port, "api.test", good)
    assert ok.returncode == 0 and ok.stdout == "ok", ok.stderr
    bad_host = curl_get(served.port, "wrong.test", good)
    assert bad_host.returncode == 60, bad_host.stderr  # CURLE_PEER_FAILED_VERIFICATION
    bad_ca = curl_get(served.port, "api.test", wrong)
    assert bad_ca.returncode == 60, bad_ca.stderr


@pytest.mark.skipif(not have("node"), reason="node is not installed")
@pytest.mark.parametrize("mode", ["ca", "extra"])
def test_node_handshake(served, ca_files: tuple[Path, Path], mode: str) -> None:
    good, wrong = ca_files
    ok = node_get(served.port, "api.test", good, mode=mode)
    assert ok.returncode == 0 and ok.stdout.strip() == "ok", ok.stdout + ok.stderr
    bad_host = node_get(served.port, "wrong.test", good, mode=mode)
    assert bad_host.returncode == 1 and bad_host.stdout.startswith("ERR_TLS_CERT_ALTNAME_INVALID "), bad_host.stdout
    bad_ca = node_get(served.port, "api.test", wrong, mode=mode)
    assert bad_ca.returncode == 1 and bad_ca.stdout.split()[0] in {
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY", "UNABLE_TO_VERIFY_LEAF_SIGNATURE"
    }, bad_ca.stdout


def test_leaf_never_starts_before_the_ca_nor_outlives_it(ca: CertificateAuthority) -> None:
    early = ca.not_before + dt.timedelta(minutes=10)
    leaf = ca.issue("api.test", now=early)
    assert leaf.not_before == ca.not_before
    late = ca.not_after - dt.timedelta(days=2)
    leaf = ca.issue("api.test", now=late)
    assert leaf.not_after == ca.not_after
    assert x509.load_pem_x509_certificate(leaf.cert_pem).not_valid_after_utc == ca.not_after


def test_expired_ca_refuses(ca: CertificateAuthority) -> None:
    from cordon_ca import CAError

    with pytest.raises(CAError, match="expired") as info:
        ca.issue("api.test", now=ca.not_after + dt.timedelta(seconds=1))
    assert info.value.hint and "generate --force" in info.value.hint
