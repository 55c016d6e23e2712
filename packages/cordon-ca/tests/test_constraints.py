"""(beyond) Name-constrained CA: profile, refusal in code, re-issue on change, and real clients rejecting an
out-of-scope leaf that was signed by the constrained CA anyway."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import ssl
from pathlib import Path

import pytest
from cordon_ca import (
    CertificateAuthority,
    HostNotAllowed,
    LeafContextCache,
    ensure_ca_matches,
    load_or_create_ca,
    server_context,
)
from cordon_testing.tls import curl_get, have, node_get, openssl_verify, python_handshake, serving, write_pem
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

ROUTED = ["api.test", "Other.Test."]


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return load_or_create_ca(
        tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem", namespace="nc", permitted_hosts=ROUTED
    )


def _sign_out_of_scope(ca: CertificateAuthority, host: str) -> tuple[bytes, bytes]:
    """Sign a leaf with the CA key directly, bypassing cordon_ca's refusal (what a stolen key would do)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    try:
        san: x509.GeneralName = x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        san = x509.DNSName(host)
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - dt.timedelta(hours=1), ca.not_before))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM), key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_constrained_profile(ca: CertificateAuthority) -> None:
    ext = ca.cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert ext.critical
    assert set(ext.value.permitted_subtrees) == {x509.DNSName("api.test"), x509.DNSName("other.test")}
    assert set(ext.value.excluded_subtrees) == {
        x509.DNSName(".api.test"),  # the subdomains of each permitted host are taken back out
        x509.DNSName(".other.test"),
        x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")),
        x509.IPAddress(ipaddress.ip_network("::/0")),
    }
    assert ca.permitted_hosts == frozenset({"api.test", "other.test"}) and ca.exact_constraints


def test_refuses_out_of_scope_leaves(ca: CertificateAuthority) -> None:
    ca.issue_leaf("API.test")
    for host in ("evil.test", "sub.api.test", "127.0.0.1", "::1"):
        with pytest.raises(HostNotAllowed):
            ca.issue_leaf(host)
    cache = LeafContextCache(ca, allowed_hosts=None)
    cache.get("other.test")
    with pytest.raises(HostNotAllowed):
        cache.get("evil.test")


def test_ip_cannot_be_permitted(tmp_path: Path) -> None:
    with pytest.raises(HostNotAllowed, match="exclude every IP"):
        load_or_create_ca(tmp_path / "c.pem", tmp_path / "k.pem", namespace="n", permitted_hosts=["127.0.0.1"])


def test_empty_host_set_permits_nothing(tmp_path: Path) -> None:
    ca = load_or_create_ca(tmp_path / "c.pem", tmp_path / "k.pem", namespace="n", permitted_hosts=[])
    assert ca.permitted_hosts == frozenset()
    with pytest.raises(HostNotAllowed):
        ca.issue_leaf("api.test")
    leaf = write_pem(tmp_path / "leaf.pem", _sign_out_of_scope(ca, "api.test")[0])
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    assert openssl_verify(ca_file, leaf, "api.test").returncode != 0


def test_ensure_ca_matches(tmp_path: Path) -> None:
    cert, key = tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem"
    assert ensure_ca_matches(cert, key, namespace="n", permitted_hosts=["a.test"]) is True
    first = CertificateAuthority.load(cert, key)
    assert ensure_ca_matches(cert, key, namespace="n", permitted_hosts=["A.test."]) is False
    assert CertificateAuthority.load(cert, key).fingerprint_sha256 == first.fingerprint_sha256
    assert ensure_ca_matches(cert, key, namespace="n", permitted_hosts=["a.test", "b.test"]) is True
    second = CertificateAuthority.load(cert, key)
    assert second.permitted_hosts == frozenset({"a.test", "b.test"})
    assert not key.with_name("ca-key.pem.bak").exists() and not cert.with_name("ca-cert.pem.bak").exists()
    assert ensure_ca_matches(cert, key, namespace="n", permitted_hosts=None) is True
    assert CertificateAuthority.load(cert, key).permitted_hosts is None
    assert ensure_ca_matches(cert, key, namespace="n", permitted_hosts=None) is False


def _verifier_accepts(ca: CertificateAuthority, leaf_pem: bytes, host: str) -> bool:
    verifier = PolicyBuilder().store(Store([ca.cert])).build_server_verifier(x509.DNSName(host))
    try:
        verifier.verify(x509.load_pem_x509_certificate(leaf_pem), [])
    except VerificationError:
        return False
    return True


def test_verifiers_reject_out_of_scope_leaf(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    good = ca.issue_leaf("api.test")[0]
    evil = _sign_out_of_scope(ca, "evil.test")[0]
    assert openssl_verify(ca_file, write_pem(tmp_path / "good.pem", good), "api.test").returncode == 0
    result = openssl_verify(ca_file, write_pem(tmp_path / "evil.pem", evil), "evil.test")
    assert result.returncode != 0
    assert "permitted subtree violation" in result.stdout + result.stderr
    assert not _verifier_accepts(ca, evil, "evil.test")


def test_pyca_verifier_refuses_leading_dot_constraints(ca: CertificateAuthority) -> None:
    """The known limitation docs/tls-and-trust.md states: pyca/cryptography's own X.509 verifier calls the
    ``.host`` exclusion malformed and rejects every leaf (OpenSSL, rustls/webpki, Go, NSS and SChannel accept
    it; Python's ssl, curl, Node and the agent CLIs use one of those). When this starts passing leaves, update
    the docs."""
    good = ca.issue_leaf("api.test")[0]
    verifier = PolicyBuilder().store(Store([ca.cert])).build_server_verifier(x509.DNSName("api.test"))
    with pytest.raises(VerificationError, match="malformed DNS name constraint"):
        verifier.verify(x509.load_pem_x509_certificate(good), [])


@pytest.fixture
def evil_server(ca: CertificateAuthority):
    with serving(server_context(*_sign_out_of_scope(ca, "evil.test"))) as server:
        yield server


@pytest.fixture
def good_server(ca: CertificateAuthority):
    with serving(server_context(*ca.issue_leaf("api.test"))) as server:
        yield server


def test_python_rejects_out_of_scope(ca, evil_server, good_server, tmp_path: Path) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    python_handshake(good_server.port, "api.test", ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="permitted subtree violation"):
        python_handshake(evil_server.port, "evil.test", ca_file)


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
def test_curl_rejects_out_of_scope(ca, evil_server, good_server, tmp_path: Path) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    ok = curl_get(good_server.port, "api.test", ca_file)
    assert ok.returncode == 0, ok.stderr
    bad = curl_get(evil_server.port, "evil.test", ca_file)
    assert bad.returncode == 60, bad.stderr


@pytest.mark.skipif(not have("node"), reason="node is not installed")
@pytest.mark.parametrize("mode", ["ca", "extra"])
def test_node_rejects_out_of_scope(ca, evil_server, good_server, tmp_path: Path, mode: str) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    ok = node_get(good_server.port, "api.test", ca_file, mode=mode)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = node_get(evil_server.port, "evil.test", ca_file, mode=mode)
    assert bad.returncode == 1 and "permitted subtree violation" in bad.stdout, bad.stdout


# -- exactly the routed host (SECURITY.md §E rule 6): a stolen key mints for nothing else ---------------------
ROUTED_HOST = "api.example.com"
NOT_ROUTED = [("evil.api.example.com", "subdomain"), ("www.google.com", "another site"),
              ("127.0.0.1", "an IP"), ("*.api.example.com", "a wildcard")]


@pytest.fixture(scope="module")
def exact_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    """A CA as cordon now makes it by default for one route on api.example.com."""
    directory = tmp_path_factory.mktemp("exact")
    return load_or_create_ca(directory / "ca-cert.pem", directory / "ca-key.pem", namespace="exact",
                             permitted_hosts=[ROUTED_HOST])


def _connect_host(name: str) -> str:
    return "x.api.example.com" if name.startswith("*.") else name


@pytest.mark.parametrize("name,what", NOT_ROUTED, ids=[w for _, w in NOT_ROUTED])
def test_openssl_verify_rejects_all_but_the_routed_host(exact_ca, tmp_path: Path, name: str, what: str) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", exact_ca.cert_pem)
    good = write_pem(tmp_path / "good.pem", exact_ca.issue_leaf(ROUTED_HOST)[0])
    assert openssl_verify(ca_file, good, ROUTED_HOST).returncode == 0
    with pytest.raises(HostNotAllowed):
        exact_ca.issue_leaf(name)
    leaf = write_pem(tmp_path / "leaf.pem", _sign_out_of_scope(exact_ca, name)[0])
    result = openssl_verify(ca_file, leaf, _connect_host(name))
    assert result.returncode != 0, f"{what}: {result.stdout}"
    assert "subtree violation" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def exact_servers(exact_ca):
    with contextlib.ExitStack() as stack:
        servers = {name: stack.enter_context(serving(server_context(*_sign_out_of_scope(exact_ca, name))))
                   for name, _ in NOT_ROUTED}
        servers[ROUTED_HOST] = stack.enter_context(serving(server_context(*exact_ca.issue_leaf(ROUTED_HOST))))
        yield servers


@pytest.mark.parametrize("name,what", NOT_ROUTED, ids=[w for _, w in NOT_ROUTED])
def test_python_ssl_rejects_all_but_the_routed_host(exact_ca, exact_servers, tmp_path, name, what) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", exact_ca.cert_pem)
    python_handshake(exact_servers[ROUTED_HOST].port, ROUTED_HOST, ca_file)
    with pytest.raises(ssl.SSLCertVerificationError, match="subtree violation"):
        python_handshake(exact_servers[name].port, _connect_host(name), ca_file)


@pytest.mark.skipif(not have("curl"), reason="curl is not installed")
@pytest.mark.parametrize("name,what", NOT_ROUTED, ids=[w for _, w in NOT_ROUTED])
def test_curl_rejects_all_but_the_routed_host(exact_ca, exact_servers, tmp_path, name, what) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", exact_ca.cert_pem)
    ok = curl_get(exact_servers[ROUTED_HOST].port, ROUTED_HOST, ca_file)
    assert ok.returncode == 0, ok.stderr
    bad = curl_get(exact_servers[name].port, _connect_host(name), ca_file)
    assert bad.returncode == 60, f"{what}: {bad.returncode} {bad.stderr}"


@pytest.mark.skipif(not have("node"), reason="node is not installed")
@pytest.mark.parametrize("name,what", NOT_ROUTED, ids=[w for _, w in NOT_ROUTED])
def test_node_rejects_all_but_the_routed_host(exact_ca, exact_servers, tmp_path, name, what) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", exact_ca.cert_pem)
    ok = node_get(exact_servers[ROUTED_HOST].port, ROUTED_HOST, ca_file)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    bad = node_get(exact_servers[name].port, _connect_host(name), ca_file)
    assert bad.returncode == 1 and "subtree violation" in bad.stdout, f"{what}: {bad.stdout}"
