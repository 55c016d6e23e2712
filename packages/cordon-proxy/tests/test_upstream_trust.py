"""Upstream trust is cordon's own choice: never the environment's CA variables, never a cordon CA.

Real TLS servers on 127.0.0.1 present certificates from a real cordon CA (made by cordon-ca) and from a trustme
CA; the pool must refuse what only the environment or a cordon CA vouches for.
"""

from __future__ import annotations

import asyncio
import ssl
from ipaddress import ip_address
from pathlib import Path

import pytest
import trustme
from cordon_ca import load_or_create_ca, server_context
from cordon_ca.recognise import is_cordon_ca, split_cordon_cas
from cordon_proxy.upstream import Resolver, UpstreamError, UpstreamPool, UpstreamTrustError, upstream_trust
from cryptography import x509


def _cordon_ca(tmp_path: Path, name: str = "proj-1234"):
    return load_or_create_ca(tmp_path / name / "ca-cert.pem", tmp_path / name / "ca-key.pem", namespace=name)


async def _handshake(ctx: ssl.SSLContext, server: ssl.SSLContext, cordon: ssl.SSLContext | None = None) -> str:
    """Connect the pool to a TLS server using ``server``; '' on success, else the UpstreamError message."""
    srv = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=server)
    port = srv.sockets[0].getsockname()[1]
    pool = UpstreamPool(ctx, Resolver({"api.test": [ip_address("127.0.0.1")]}), connect_timeout=5,
                        cordon_context=cordon)
    try:
        conn = await pool.connect_tls("api.test", port, "api.test")
        conn.close()
        return ""
    except UpstreamError as exc:
        assert exc.code == "upstream-tls"
        return exc.message
    finally:
        srv.close()
        await srv.wait_closed()


def test_the_cordon_ca_marker_is_recognised(tmp_path: Path) -> None:
    ca = _cordon_ca(tmp_path)
    assert is_cordon_ca(ca.cert)
    other = x509.load_pem_x509_certificate(trustme.CA().cert_pem.bytes())
    assert not is_cordon_ca(other)
    others, cordon = split_cordon_cas(trustme.CA().cert_pem.bytes() + ca.cert_pem)
    assert len(others) == 1 and [c.subject for c in cordon] == [ca.cert.subject]


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"])
def test_ca_variables_the_proxy_inherits_add_no_trust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      variable: str) -> None:
    ca = trustme.CA()
    bundle = tmp_path / "bundle.pem"
    ca.cert_pem.write_to_path(str(bundle))
    if variable == "SSL_CERT_DIR":  # an OpenSSL hash directory holding the CA
        import subprocess

        subprocess.run(["openssl", "rehash", str(tmp_path)], check=True, capture_output=True)
    monkeypatch.setenv(variable, str(tmp_path if variable == "SSL_CERT_DIR" else bundle))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("api.test").configure_cert(server)
    message = asyncio.run(_handshake(upstream_trust().context, server))
    assert message.startswith("upstream TLS verification failed for api.test: "), message
    extra = upstream_trust(bundle).context  # the same CA through [tls] upstream_ca_file is trusted
    assert asyncio.run(_handshake(extra, server)) == ""


def test_a_cordon_ca_in_the_system_store_is_never_trusted_upstream_and_the_refusal_says_why(tmp_path: Path) -> None:
    ca = _cordon_ca(tmp_path)
    system = tmp_path / "system.pem"
    system.write_bytes(trustme.CA().cert_pem.bytes() + ca.cert_pem)  # `cordon-ca trust install` put it there
    trust = upstream_trust(system_bundle=system)
    cert, key = ca.issue_leaf("api.test")
    message = asyncio.run(_handshake(trust.context, server_context(cert, key), trust.cordon))
    assert message == ("upstream TLS verification failed for api.test: its certificate chain ends at a cordon CA, "
                       "which cordon never trusts upstream")


def test_this_scopes_own_ca_is_named_too(tmp_path: Path) -> None:
    ca = _cordon_ca(tmp_path)
    trust = upstream_trust(cordon_cas=[ca.cert_path])
    cert, key = ca.issue_leaf("api.test")
    message = asyncio.run(_handshake(trust.context, server_context(cert, key), trust.cordon))
    assert message.endswith("its certificate chain ends at a cordon CA, which cordon never trusts upstream")
    other = trustme.CA()  # an unknown CA: the usual verification message
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other.issue_cert("api.test").configure_cert(server)
    assert "cordon CA" not in asyncio.run(_handshake(trust.context, server, trust.cordon))


def test_an_upstream_ca_file_holding_a_cordon_ca_is_a_config_error(tmp_path: Path) -> None:
    ca = _cordon_ca(tmp_path, "other-scope-9f")
    mixed = tmp_path / "private-cas.pem"
    mixed.write_bytes(trustme.CA().cert_pem.bytes() + ca.cert_pem)
    with pytest.raises(UpstreamTrustError) as info:
        upstream_trust(mixed)
    assert info.value.message.startswith(f"[tls] upstream_ca_file {mixed} contains a cordon CA (")
    assert "cordon local CA other-scope-9f" in info.value.message
    assert info.value.hint and str(mixed) in info.value.hint


def test_an_unreadable_or_malformed_upstream_ca_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UpstreamTrustError) as missing:
        upstream_trust(tmp_path / "absent.pem")
    assert "cannot read [tls] upstream_ca_file" in missing.value.message
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(UpstreamTrustError) as malformed:
        upstream_trust(bad)
    assert "is not a PEM certificate bundle" in malformed.value.message


def test_an_upstream_ca_file_with_no_pem_certificate_is_refused(tmp_path: Path) -> None:
    hostname = tmp_path / "hostname"
    hostname.write_text("devbox\n")  # as /etc/hostname: readable, but no certificate in it
    with pytest.raises(UpstreamTrustError) as info:
        upstream_trust(hostname)
    assert info.value.message == f"[tls] upstream_ca_file {hostname} contains no PEM certificate"
    assert info.value.hint and "cordon config unset tls.upstream_ca_file" in info.value.hint
