"""The demo's verification step catches a proxy that did not inject, or that leaked the secret back."""

from __future__ import annotations

import http.client
import io
import ssl
from pathlib import Path
from types import SimpleNamespace

import pytest
import trustme
from cordon_doctor.demo import REQUEST_PATH, ClientExchange, Demo
from cordon_doctor.echo import EchoServer
from cordon_doctor.sandbox import StepFailed

SECRET = "sk-demo-" + "a" * 28


@pytest.fixture
def echo(tmp_path: Path):
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key, ca_file = tmp_path / "c.pem", tmp_path / "k.pem", tmp_path / "ca.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    with EchoServer(cert, key) as server:
        yield server, ssl.create_default_context(cafile=str(ca_file))


def send(server: EchoServer, ctx: ssl.SSLContext, auth: str) -> None:
    conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", REQUEST_PATH, headers={"Authorization": auth})
        conn.getresponse().read()
    finally:
        conn.close()


def verify(server: EchoServer, body: bytes = b"{}") -> None:
    demo = Demo(io.StringIO())
    demo.exchange = ClientExchange(status=200, reason="OK", body=body)
    demo._verify_step(SimpleNamespace(echo=server, secret=SECRET, proxy=None))  # type: ignore[arg-type]


def test_dummy_reaching_upstream_fails_verify(echo) -> None:
    server, ctx = echo
    send(server, ctx, "Bearer dummy-replaced-by-cordon")
    with pytest.raises(StepFailed) as exc:
        verify(server)
    assert exc.value.step == "verify" and "dummy key" in str(exc.value)


def test_secret_in_response_fails_verify(echo) -> None:
    server, ctx = echo
    send(server, ctx, f"Bearer {SECRET}")
    verify(server)  # injected, nothing leaked: passes
    with pytest.raises(StepFailed) as exc:
        verify(server, body=b'{"echo": "' + SECRET.encode() + b'"}')
    assert exc.value.step == "verify" and "came back to the client" in str(exc.value)
