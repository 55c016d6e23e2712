"""End-to-end: the real proxy subprocess injects the real secret for curl and Python clients.

Every request carries a dummy key; the recording upstream must see the real secret and never the dummy, and
the client must never see the secret. Loopback only (``api.test`` resolves through the hosts file of the
proxy's mount namespace, see cordon_testing.namespaces).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import ssl
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.namespaces import PrivateNetwork
from cordon_testing.proxy import Stack, curl, running_stack

pytestmark = pytest.mark.e2e

SECRET = "sk-real-secret-0123456789"
DUMMY = "sk-dummy-replaced-by-cordon"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("inject"), secrets={"CORDON_TEST_SECRET": SECRET}) as s:
        yield s


def _assert_injected(stack: Stack, since: int, client_saw: bytes) -> None:
    seen = stack.upstream.requests[since:]
    assert seen, "the upstream saw no request"
    for request in seen:
        assert request.header("Authorization") == [f"Bearer {SECRET}"]
        assert DUMMY not in json.dumps(request.headers)
        assert request.header("Proxy-Authorization") == []
    assert SECRET.encode() not in client_saw


needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


@needs_curl
def test_curl_with_dash_x(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    url = f"https://api.test:{stack.upstream.port}/v1/models?limit=1"
    result = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca), "-H", f"Authorization: Bearer {DUMMY}",
                  "-D", "-", url)
    assert result.returncode == 0, result.stderr
    assert "HTTP/1.1 200" in result.stdout and '"path": "/v1/models?limit=1"' in result.stdout
    _assert_injected(stack, before, result.stdout.encode() + result.stderr.encode())


@needs_curl
def test_curl_with_https_proxy_env(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HTTPS_PROXY=stack.proxy_url, CURL_CA_BUNDLE=str(stack.cordon_ca))
    result = curl("-H", f"Authorization: Bearer {DUMMY}", "-X", "POST", "--data-binary", '{"q": 1}',
                  f"https://api.test:{stack.upstream.port}/v1/chat", env=env)
    assert result.returncode == 0, result.stderr
    _assert_injected(stack, before, result.stdout.encode())
    assert stack.upstream.requests[-1].body == b'{"q": 1}'


def test_http_client_keep_alive_two_requests_on_one_tunnel(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", stack.proxy.port, context=ctx, timeout=10)
    conn.set_tunnel("api.test", stack.upstream.port)
    try:
        bodies = []
        for path in ("/one", "/two"):
            conn.request("GET", path, headers={"Authorization": f"Bearer {DUMMY}"})
            response = conn.getresponse()
            assert response.status == 200
            bodies.append(response.read())
        sock = conn.sock
        assert sock is not None
    finally:
        conn.close()
    assert [json.loads(b)["path"] for b in bodies] == ["/one", "/two"]
    _assert_injected(stack, before, b"".join(bodies))
    # one upstream connection carried both (pooled keep-alive on the upstream leg)
    assert len({r.connection for r in stack.upstream.requests[before:]}) == 1


def _urllib_get(stack: Stack, path: str) -> bytes:
    """GET ``path`` on api.test with urllib through the proxy (the dummy key); the body."""
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"https": stack.proxy_url}), urllib.request.HTTPSHandler(context=ctx)
    )
    request = urllib.request.Request(f"https://api.test:{stack.upstream.port}{path}",
                                     headers={"Authorization": f"Bearer {DUMMY}"})
    with opener.open(request, timeout=10) as response:
        return bytes(response.read())


def test_urllib_through_proxy_handler(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    body = _urllib_get(stack, "/urllib")
    assert json.loads(body)["path"] == "/urllib"
    _assert_injected(stack, before, body)


def test_unmatched_host_is_tunnelled_untouched(tmp_path: Path) -> None:
    """other.test has no route: the client talks TLS with the upstream itself (its own CA, its own header).

    In a private network, where other.test resolves to an address the SSRF policy allows."""
    with PrivateNetwork() as network, running_stack(tmp_path, network=network) as stack:
        _unmatched_host_is_tunnelled_untouched(stack)


def _unmatched_host_is_tunnelled_untouched(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    ctx = ssl.create_default_context(cafile=str(stack.upstream_ca))  # not the cordon CA: no MITM here
    conn = http.client.HTTPSConnection("127.0.0.1", stack.proxy.port, context=ctx, timeout=10)
    conn._create_connection = stack.create_connection  # type: ignore[attr-defined]
    conn.set_tunnel("other.test", stack.upstream.port)
    try:
        conn.request("GET", "/tunnel", headers={"Authorization": f"Bearer {DUMMY}"})
        response = conn.getresponse()
        assert response.status == 200
        response.read()
    finally:
        conn.close()
    (seen,) = stack.upstream.requests[before:]
    assert seen.header("Authorization") == [f"Bearer {DUMMY}"]
    assert seen.header("Via") == []  # bytes were spliced, not re-serialised


def test_health_says_only_ok_to_a_client_without_the_scopes_key(stack: Stack) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", stack.proxy.port, timeout=5)
    try:
        conn.request("GET", "/health")
        response = conn.getresponse()
        data = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 200
    assert data == {"status": "ok"}  # no version, no route count


def test_logs_have_one_line_per_request_and_no_secret(stack: Stack) -> None:
    # the lines this test reads, whichever tests ran before it: a query string and the urllib request
    _urllib_get(stack, "/v1/models?limit=1")
    _urllib_get(stack, "/urllib")
    deadline = time.monotonic() + 10
    while "GET api.test/urllib 200" not in (logs := stack.proxy.logs()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert "GET api.test/urllib 200" in logs and "route=api" in logs
    assert "limit=1" not in logs  # no query strings
    assert SECRET not in logs and DUMMY not in logs


def test_secret_never_written_anywhere_in_the_test_dir(stack: Stack) -> None:
    root: Path = stack.proxy.config_path.parent
    for path in root.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
