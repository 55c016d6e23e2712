"""End-to-end: proxy tokens (SECURITY.md A.5) against the real proxy subprocess.

With tokens.toml present at start, all traffic needs a valid ``Proxy-Authorization`` (SECURITY.md §E rule 4:
the proxy is no open egress for every local user): routed and unrouted CONNECT, routed and unrouted plain-HTTP
forwarding (else 407 + ``Proxy-Authenticate``, nothing reaches the upstream); a malformed, duplicated or
invalid one is refused everywhere; the token's name (never its value) is logged; deleting tokens.toml after
start does not reopen anything. The stack lives in a private network namespace, where the unrouted host
resolves to an address the SSRF policy allows.
"""

from __future__ import annotations

import base64
import http.client
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cordon_config.tokens import TokenStore
from cordon_proxy.tokens import CHECK_EVERY
from cordon_testing.namespaces import PrivateNetwork
from cordon_testing.proxy import RecordingUpstream, Stack, read_head, running_stack, tokens_for

pytestmark = pytest.mark.e2e

TIMEOUT = 10.0
SECRET = "sk-token-test-secret-4e2b"


@dataclass
class TokenStack:
    stack: Stack
    namespace: str
    tokens_path: Path
    codex: str
    default: str

    def header(self, token: str, user: str | None = None) -> str:
        raw = f"{self.namespace if user is None else user}:{token}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@pytest.fixture(scope="module")
def ts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TokenStack]:
    directory = tmp_path_factory.mktemp("tokens")
    tokens_path, namespace = tokens_for(directory / "cordon.toml")  # where the proxy subprocess looks
    store = TokenStore.open(tokens_path)
    default, codex = store.ensure("default"), store.ensure("codex")
    assert tokens_path.stat().st_mode & 0o777 == 0o600
    with PrivateNetwork() as network, running_stack(directory, secrets={"CORDON_TEST_SECRET": SECRET},
                                                    network=network) as s:
        yield TokenStack(s, namespace, tokens_path, codex, default)


def _connect(stack: Stack, authority: str, headers: list[str]) -> tuple[bytes, socket.socket]:
    sock = stack.connect()
    lines = [f"CONNECT {authority} HTTP/1.1", f"Host: {authority}", *headers]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return read_head(sock), sock


def _connect_status(stack: Stack, authority: str, headers: list[str]) -> bytes:
    head, sock = _connect(stack, authority, headers)
    sock.close()
    return head


def _assert_407(response: bytes) -> None:
    assert response.startswith(b"HTTP/1.1 407 "), response[:300]
    assert b'\r\nProxy-Authenticate: Basic realm="cordon"\r\n' in response
    assert b"\r\nX-Cordon-Error: proxy-auth-required\r\n" in response


def _routed(ts: TokenStack) -> str:
    return f"api.test:{ts.stack.upstream.port}"


def _unrouted(ts: TokenStack) -> str:
    return (
        f"other.test:{ts.stack.upstream.port}"  # an allowed address inside the stack's private network
    )


def _https_get(ts: TokenStack, proxy_auth: str | None, path: str = "/tok") -> int:
    ctx = ssl.create_default_context(cafile=str(ts.stack.cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", ts.stack.proxy.port, context=ctx, timeout=TIMEOUT)
    conn._create_connection = ts.stack.create_connection  # type: ignore[attr-defined]
    headers = {} if proxy_auth is None else {"Proxy-Authorization": proxy_auth}
    conn.set_tunnel("api.test", ts.stack.upstream.port, headers=headers)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer dummy"})
        response = conn.getresponse()
        response.read()
        return response.status
    except OSError as exc:
        if "407" in str(exc):
            return 407
        raise
    finally:
        conn.close()


def test_routed_without_token_is_407(ts: TokenStack) -> None:
    before = len(ts.stack.upstream.requests), ts.stack.upstream.connections
    _assert_407(_connect_status(ts.stack, _routed(ts), []))
    assert _https_get(ts, None) == 407
    assert (len(ts.stack.upstream.requests), ts.stack.upstream.connections) == before


INVALID = {
    "wrong-token": lambda ts: ts.header("x" * 43),
    "wrong-namespace": lambda ts: ts.header(ts.codex, user="other-namespace"),
    "empty-token": lambda ts: ts.header(""),
    "no-colon": lambda ts: "Basic " + base64.b64encode(ts.codex.encode()).decode(),
    "bad-base64": lambda ts: "Basic !!!not-base64!!!",
    "bearer-scheme": lambda ts: f"Bearer {ts.codex}",
    "raw-token": lambda ts: ts.codex,
    "empty": lambda ts: "",
    "token-prefix": lambda ts: ts.header(ts.codex[:-1]),
    "token-suffix": lambda ts: ts.header(ts.codex + "x"),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_routed_with_invalid_token_is_407(ts: TokenStack, case: str) -> None:
    value = INVALID[case](ts)
    _assert_407(_connect_status(ts.stack, _routed(ts), [f"Proxy-Authorization: {value}"]))


def test_routed_with_valid_token_works_and_logs_its_name(ts: TokenStack) -> None:
    before = len(ts.stack.upstream.requests)
    assert _https_get(ts, ts.header(ts.codex), path="/with-codex-token") == 200
    seen = ts.stack.upstream.requests[before:]
    assert len(seen) == 1
    assert seen[0].header("Authorization") == [f"Bearer {SECRET}"]
    assert seen[0].header("Proxy-Authorization") == []
    deadline = time.monotonic() + TIMEOUT
    while True:  # the request line is logged just after the response is written
        logs = ts.stack.proxy.logs()
        line = next((x for x in logs.splitlines() if "/with-codex-token" in x), None)
        if line is not None:
            break
        assert time.monotonic() < deadline, "the request was never logged"
        time.sleep(0.05)
    assert "token=codex" in line
    for value in (ts.codex, ts.default, ts.header(ts.codex).split()[1]):
        assert value not in logs


def test_absolute_form_to_routed_host_needs_a_token(ts: TokenStack) -> None:
    request = f"GET http://{_routed(ts)}/x HTTP/1.1\r\nHost: {_routed(ts)}\r\n\r\n".encode()
    with ts.stack.connect() as sock:
        sock.sendall(request)
        _assert_407(sock.recv(65536))


def test_unrouted_tunnel_without_token_is_407_and_reaches_nothing(ts: TokenStack) -> None:
    before = len(ts.stack.upstream.requests), ts.stack.upstream.connections
    _assert_407(_connect_status(ts.stack, _unrouted(ts), []))
    assert (len(ts.stack.upstream.requests), ts.stack.upstream.connections) == before


def test_unrouted_plain_http_without_token_is_407_and_with_one_is_forwarded(ts: TokenStack) -> None:
    with RecordingUpstream(tls=False, network=ts.stack.network) as plain:
        target = f"other.test:{plain.port}"
        request = f"GET http://{target}/plain HTTP/1.1\r\nHost: {target}\r\n%s\r\n"
        with ts.stack.connect() as sock:
            sock.sendall((request % "").encode())
            _assert_407(read_head(sock))
        assert plain.requests == []
        with ts.stack.connect() as sock:
            sock.sendall((request % f"Proxy-Authorization: {ts.header(ts.default)}\r\nConnection: close\r\n")
                         .encode())
            assert read_head(sock).startswith(b"HTTP/1.1 200 ")
        (seen,) = plain.requests
    assert seen.header("Proxy-Authorization") == [] and seen.header("Authorization") == []


@pytest.mark.parametrize("case", sorted(INVALID))
def test_unrouted_with_invalid_token_is_407(ts: TokenStack, case: str) -> None:
    value = INVALID[case](ts)
    _assert_407(_connect_status(ts.stack, _unrouted(ts), [f"Proxy-Authorization: {value}"]))


def test_duplicate_token_is_407_even_unrouted_and_even_when_both_valid(ts: TokenStack) -> None:
    valid = ts.header(ts.codex)
    for target in (_unrouted(ts), _routed(ts)):
        for pair in ((valid, valid), (valid, ts.header(ts.default)), (valid, "Basic junk")):
            headers = [f"Proxy-Authorization: {pair[0]}", f"Proxy-Authorization: {pair[1]}"]
            _assert_407(_connect_status(ts.stack, target, headers))


def test_unrouted_with_valid_token_works_untouched(ts: TokenStack) -> None:
    head, sock = _connect(ts.stack, _unrouted(ts), [f"Proxy-Authorization: {ts.header(ts.default)}"])
    with sock:
        assert head.startswith(b"HTTP/1.1 200 "), head
        ctx = ssl.create_default_context(cafile=str(ts.stack.upstream_ca))
        with ctx.wrap_socket(sock, server_hostname="other.test") as tls:  # straight through to the upstream
            tls.sendall(b"GET /unrouted HTTP/1.1\r\nHost: other.test\r\nConnection: close\r\n\r\n")
            assert tls.recv(4096).startswith(b"HTTP/1.1 200 ")
    assert ts.stack.upstream.requests[-1].header("Authorization") == []  # nothing injected off-route


def test_deleting_tokens_file_does_not_reopen_routed_hosts(ts: TokenStack) -> None:
    """Last in this module: it removes tokens.toml under the running proxy."""
    ts.tokens_path.unlink()
    time.sleep(CHECK_EVERY + 0.2)  # let the proxy notice (it re-checks the file at most once per CHECK_EVERY)
    _assert_407(_connect_status(ts.stack, _routed(ts), []))
    _assert_407(_connect_status(ts.stack, _unrouted(ts), []))
    assert _https_get(ts, None) == 407
    assert _https_get(ts, ts.header(ts.codex)) == 200
