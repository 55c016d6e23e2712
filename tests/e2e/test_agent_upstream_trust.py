"""The agent is the adversary: the proxy can never be made to trust a cordon CA upstream (SECURITY.md §E rule 5).

Attack: the proxy is started from a shell where ``eval "$(cordon env)"`` ran, so it inherits ``SSL_CERT_FILE`` =
the combined bundle (system store + the scope's cordon CA); the attacker holds a copy of the CA key and a
network position, so the "upstream" presents a leaf for the routed host issued by that CA. The recording
upstream must receive no request (the secret never leaves), and the client gets a 502 naming why. Then the
same CA put into ``[tls] upstream_ca_file`` must stop the proxy from starting at all.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_ca import load_or_create_ca, write_combined_bundle
from cordon_testing.namespaces import hosts_argv
from cordon_testing.proxy import (
    ProxyProcess,
    RecordingUpstream,
    RouteSpec,
    approve_as_user,
    curl,
    free_port,
    write_config,
)

pytestmark = pytest.mark.e2e

SECRET = "sk-upstream-trust-secret-5a1d"


class _CordonIssued:
    """A trustme-like CA object whose certificates come from a real cordon CA (for RecordingUpstream)."""

    def __init__(self, ca) -> None:  # type: ignore[no-untyped-def]
        self.ca = ca

    def issue_cert(self, *hosts: str, not_before=None, not_after=None):  # type: ignore[no-untyped-def]
        cert_pem, key_pem = self.ca.issue_leaf(hosts[0])

        class Issued:
            def configure_cert(self, ctx) -> None:  # type: ignore[no-untyped-def]
                import tempfile

                with tempfile.TemporaryDirectory() as tmp:
                    cert, key = Path(tmp) / "c.pem", Path(tmp) / "k.pem"
                    cert.write_bytes(cert_pem)
                    key.write_bytes(key_pem)
                    ctx.load_cert_chain(cert, key)

        return Issued()


def test_an_upstream_signed_by_the_scopes_own_ca_gets_no_secret_even_with_ssl_cert_file(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "state" / "certs"
    ca = load_or_create_ca(certs / "ca-cert.pem", certs / "ca-key.pem", namespace="victim-1234")
    bundle = write_combined_bundle(certs / "ca-cert.pem", certs / "combined-ca.pem")
    with RecordingUpstream(_CordonIssued(ca), hosts=("api.test",)) as evil:
        config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
        env = dict(os.environ, CORDON_TEST_SECRET=SECRET, SSL_CERT_FILE=str(bundle), SSL_CERT_DIR=str(certs),
                   REQUESTS_CA_BUNDLE=str(bundle))
        with ProxyProcess(config, port, env=env) as proxy:
            result = curl("-x", proxy.url, "--cacert", str(certs / "ca-cert.pem"), "-H", "Authorization: Bearer dummy",
                          "-w", "\n%{http_code}", f"https://api.test:{evil.port}/steal")
            logs = proxy.logs()
        assert evil.requests == []  # a handshake at most: no request, no header, no secret
    body, _, code = result.stdout.rpartition("\n")
    assert code == "502", result
    assert ("upstream TLS verification failed for api.test: its certificate chain ends at a cordon CA, which "
            "cordon never trusts upstream") in body
    assert SECRET not in logs and SECRET not in result.stdout


def test_a_cordon_ca_in_upstream_ca_file_stops_the_proxy_from_starting(tmp_path: Path) -> None:
    port = free_port()
    certs = tmp_path / "state" / "certs"
    load_or_create_ca(certs / "ca-cert.pem", certs / "ca-key.pem", namespace="victim-1234")
    config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")],
                          upstream_ca_file=certs / "ca-cert.pem")
    env = dict(os.environ, CORDON_TEST_SECRET=SECRET)
    approve_as_user(config, env)  # a human approved it (upstream_ca_file included): the check is cordon's own
    argv = hosts_argv([sys.executable, "-m", "cordon_proxy", "start", "-c", str(config)], {}, tmp_path / "hosts")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith(f"cordon: [tls] upstream_ca_file {certs / 'ca-cert.pem'} contains a cordon CA (")
    assert "hint: remove that certificate from" in result.stderr and "Traceback" not in result.stderr


def test_an_upstream_ca_file_with_no_certificate_stops_the_proxy_from_starting(tmp_path: Path) -> None:
    """A file with no PEM certificate (written into cordon.toml by hand, or by an agent and then approved) is
    not silently "no extra roots": start refuses with one line."""
    port = free_port()
    hostname = tmp_path / "hostname"
    hostname.write_text("devbox\n")
    config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")],
                          upstream_ca_file=hostname)
    env = dict(os.environ, CORDON_TEST_SECRET=SECRET)
    approve_as_user(config, env)
    argv = hosts_argv([sys.executable, "-m", "cordon_proxy", "start", "-c", str(config)], {}, tmp_path / "hosts")
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert f"cordon: [tls] upstream_ca_file {hostname} contains no PEM certificate\n" in result.stderr
    assert "Traceback" not in result.stderr
