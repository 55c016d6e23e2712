"""The echo upstream: real TLS on 127.0.0.1, records heads, masks credentials in what it sends back."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import time
from pathlib import Path

import pytest
import trustme
from cordon_doctor.echo import EchoServer


@pytest.fixture
def echo(tmp_path: Path):
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost")
    cert, key = tmp_path / "leaf.pem", tmp_path / "leaf-key.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    with EchoServer(cert, key) as server:
        yield server, ssl.create_default_context(cafile=str(ca_file))


def test_records_head_and_masks_credentials(echo) -> None:
    server, ctx = echo
    conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
    try:
        conn.request("POST", "/v1/x?q=1", body=b"hello", headers={"Authorization": "Bearer sk-abcdefghijklmnopqrstuvwxyz"})
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert b"sk-abcdefghijklmnop" not in body
    doc = json.loads(body)["received"]
    assert doc["method"] == "POST" and doc["path"] == "/v1/x?q=1" and doc["body_bytes"] == 5
    assert ["Authorization", "Bearer sk-a…(29 chars)"] in doc["headers"]
    [got] = server.requests
    assert got.header("authorization") == "Bearer sk-abcdefghijklmnopqrstuvwxyz"


def test_git_advertisement(echo) -> None:
    server, ctx = echo
    conn = http.client.HTTPSConnection("localhost", server.port, context=ctx, timeout=10)
    try:
        conn.request("GET", "/repo.git/info/refs?service=git-upload-pack")
        resp = conn.getresponse()
        body = resp.read()
    finally:
        conn.close()
    assert resp.getheader("Content-Type") == "application/x-git-upload-pack-advertisement"
    assert body.startswith(b"001e# service=git-upload-pack\n0000") and body.endswith(b"0000")


def test_untrusting_client_is_recorded_as_tls_failure(echo) -> None:
    server, _ = echo
    ctx = ssl.create_default_context()  # system roots only: rejects the echo's CA
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")
    for _ in range(200):
        if server.tls_failures:
            break
        time.sleep(0.01)
    assert server.tls_failures and not server.requests


def test_serves_ipv6_loopback_on_the_same_port(echo) -> None:
    server, ctx = echo
    try:
        probe = socket.create_connection(("::1", server.port), timeout=5)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    with ctx.wrap_socket(probe, server_hostname="localhost") as tls:
        tls.sendall(b"GET /six HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := tls.recv(4096):
            data += chunk
    assert data.startswith(b"HTTP/1.1 200") and server.requests[-1].path == "/six"
