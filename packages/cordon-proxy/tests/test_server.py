"""The asyncio edge end to end: the proxy subprocess against recording loopback upstreams.

Covers what the sans-IO tests cannot: real TLS on both legs, SNI, upstream verification errors, timeouts,
secret fetch/cache/invalidation, aborting a broken stream, SSE pass-through, tokens and the SIGTERM drain.
"""

from __future__ import annotations

import base64
import datetime
import http.client
import json
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cordon_testing.proxy import (
    TIMEOUT,
    ProxyProcess,
    RecordingUpstream,
    RouteSpec,
    Stack,
    curl,
    die_mid_body,
    free_port,
    running_stack,
    sse,
    status,
    tokens_for,
    write_config,
)

pytestmark = pytest.mark.e2e

SECRET = "sk-real-secret-0123456789"
SLOW = 3.0


def slow(h, seen) -> None:  # type: ignore[no-untyped-def]
    time.sleep(SLOW)
    status(200, b"late")(h, seen)


@pytest.fixture(scope="module")
def bad_upstream() -> Iterator[RecordingUpstream]:
    """An upstream whose certificate comes from a CA the proxy does not trust."""
    with RecordingUpstream(trustme.CA()) as up:
        yield up


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, bad_upstream: RecordingUpstream) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("server")
    secret_file = directory / "filed-secret"
    secret_file.write_text("v1-file-secret\n")
    secret_file.chmod(0o600)
    routes = [
        RouteSpec("api", "api.test", "CORDON_TEST_SECRET"),
        RouteSpec("bad", "bad.test", "CORDON_TEST_SECRET"),
        RouteSpec("filed", "filed.test", "", secret={"source": "file", "path": str(secret_file)}),
    ]
    extra = "[limits]\nresponse_header_timeout = 1.5"
    with running_stack(directory, routes, {"CORDON_TEST_SECRET": SECRET},
                       extra_config=extra, secret_ttl=60) as s:
        s.upstream.handlers.update({
            "/die": die_mid_body, "/slow": slow, "/401": status(401, b"no"),
            "/redirect": _redirect, "/sse": sse(3, 0.0, gate=GATE),
        })
        yield s


GATE = threading.Event()


def _redirect(h, seen) -> None:  # type: ignore[no-untyped-def]
    h.send_response(302)
    h.send_header("Location", "https://other.test/elsewhere")
    h.send_header("Content-Length", "0")
    h.end_headers()


def tunnel(stack: Stack, host: str, port: int | None = None, *, sni: str | None = None) -> ssl.SSLSocket:
    """A TLS socket to the proxy's MITM endpoint for ``host`` (CONNECT answered 200)."""
    port = port or stack.upstream.port
    raw = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT)
    raw.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 200"), answer
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    ctx.check_hostname = sni is None
    return ctx.wrap_socket(raw, server_hostname=sni or host)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionError, ssl.SSLError):
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def get(stack: Stack, host: str, path: str, port: int | None = None) -> tuple[int, bytes, http.client.HTTPResponse]:
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", stack.proxy.port, context=ctx, timeout=TIMEOUT)
    conn.set_tunnel(host, port or stack.upstream.port)
    try:
        conn.request("GET", path, headers={"Authorization": "Bearer dummy"})
        response = conn.getresponse()
        return response.status, response.read(), response
    finally:
        conn.close()


def test_ambiguous_framing_inside_the_tunnel_is_400_and_never_forwarded(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"POST /smuggle HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"0\r\n\r\nGET /admin HTTP/1.1\r\nHost: api.test\r\n\r\n")
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"X-Cordon-Error: bad-request" in answer and b"Connection: close" in answer
    assert len(stack.upstream.requests) == before


def test_host_mismatch_is_421_and_never_forwarded(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: other.test\r\nAuthorization: Bearer dummy\r\n\r\n")
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 421 ")
    assert answer.endswith(b"cordon: request host other.test does not match tunnel host api.test\n")
    assert len(stack.upstream.requests) == before


def test_sni_different_from_connect_host_fails_the_handshake(stack: Stack) -> None:
    with pytest.raises(ssl.SSLError):
        tunnel(stack, "api.test", sni="other.test").close()


def test_connect_to_loopback_is_blocked_by_the_ssrf_policy(stack: Stack) -> None:
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT) as raw:
        raw.sendall(f"CONNECT 127.0.0.1:{stack.upstream.port} HTTP/1.1\r\n\r\n".encode())
        answer = read_all(raw)
    assert answer.startswith(b"HTTP/1.1 403 ")
    assert b"cordon: destination 127.0.0.1 is not allowed (loopback address)" in answer


def test_plain_http_to_routed_host_is_refused(stack: Stack) -> None:
    result = curl("-x", stack.proxy_url, "-i", f"http://api.test:{stack.upstream.port}/x")
    assert "HTTP/1.1 403" in result.stdout and 'route "api" requires https' in result.stdout


def test_untrusted_upstream_certificate_is_502_naming_the_reason(stack: Stack, bad_upstream: RecordingUpstream) -> None:
    code, body, response = get(stack, "bad.test", "/", port=bad_upstream.port)
    assert code == 502
    assert response.getheader("X-Cordon-Error") == "upstream-tls"
    assert body.startswith(b"cordon: upstream TLS verification failed for bad.test: ")
    assert b"unable to get local issuer certificate" in body
    assert bad_upstream.requests == []  # the secret never left


@pytest.mark.parametrize(("shape", "reason"), [
    ({"hosts": ("someone-else.test",)}, b"Hostname mismatch"),
    ({"not_before": datetime.datetime(2020, 1, 1), "not_after": datetime.datetime(2021, 1, 1)},
     b"certificate has expired"),
])
def test_a_wrong_name_or_expired_upstream_certificate_from_a_trusted_ca_is_502(
    stack: Stack, shape: dict[str, object], reason: bytes
) -> None:
    with RecordingUpstream(stack.upstream.ca, **shape) as upstream:  # type: ignore[arg-type]
        code, body, response = get(stack, "api.test", "/", port=upstream.port)
        assert code == 502
        assert response.getheader("X-Cordon-Error") == "upstream-tls"
        assert reason in body, body
        assert upstream.requests == []  # the secret never left


def test_response_header_timeout_is_504(stack: Stack) -> None:
    code, body, _response = get(stack, "api.test", "/slow")
    assert code == 504
    assert body == b"cordon: upstream api.test timed out after 1.5 s\n"


def test_upstream_dying_mid_body_is_an_error_for_the_client(stack: Stack) -> None:
    result = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca), f"https://api.test:{stack.upstream.port}/die")
    assert result.returncode != 0  # 18 (partial file) or 56 (recv failure): never a clean success


def test_redirects_are_relayed_not_followed(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    code, _, response = get(stack, "api.test", "/redirect")
    assert code == 302 and response.getheader("Location") == "https://other.test/elsewhere"
    assert [r.path for r in stack.upstream.requests[before:]] == ["/redirect"]


def test_sse_events_reach_the_client_one_by_one(stack: Stack) -> None:
    GATE.clear()
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"POST /sse HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n")
        received = b""
        events_seen = 0
        deadline = time.monotonic() + TIMEOUT
        while b"[DONE]" not in received and time.monotonic() < deadline:
            data = tls.recv(65536)
            if not data:
                break
            received += data
            count = received.count(b"data: {")
            if count > events_seen:  # an event arrived before the upstream was allowed to send the next
                events_seen = count
                GATE.set()
    assert events_seen == 3
    assert b"[DONE]" in received and received.endswith(b"0\r\n\r\n")


def test_secret_cache_is_dropped_after_401_and_unavailable_secret_is_503(stack: Stack) -> None:
    secret_file = stack.proxy.config_path.parent / "filed-secret"

    def seen_secret() -> str:
        return stack.upstream.requests[-1].header("Authorization")[0]

    assert get(stack, "filed.test", "/a")[0] == 200
    assert seen_secret() == "Bearer v1-file-secret"
    secret_file.write_text("v2-file-secret\n")
    assert get(stack, "filed.test", "/b")[0] == 200
    assert seen_secret() == "Bearer v1-file-secret"  # cached for secret_ttl
    assert get(stack, "filed.test", "/401")[0] == 401
    assert get(stack, "filed.test", "/c")[0] == 200
    assert seen_secret() == "Bearer v2-file-secret"  # rotated value used at once
    secret_file.unlink()
    assert get(stack, "filed.test", "/401")[0] == 401
    code, body, response = get(stack, "filed.test", "/d")
    assert code == 503 and response.getheader("X-Cordon-Error") == "secret-unavailable"
    assert body.startswith(b'cordon: secret for route "filed" unavailable: ')
    assert get(stack, "api.test", "/still-serving")[0] == 200  # the proxy keeps serving other routes


def wait_for_log(stack: Stack, text: str) -> str:
    """The proxy's log once it contains ``text`` (the line is written just after the response is sent)."""
    deadline = time.monotonic() + TIMEOUT
    while text not in (logs := stack.proxy.logs()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return logs


def test_request_log_lines(stack: Stack) -> None:
    # the lines this test reads, whichever tests ran before it: a file secret used, a 200 and a 504
    get(stack, "filed.test", "/logged")
    get(stack, "api.test", "/slow")
    get(stack, "api.test", "/still-serving")
    logs = wait_for_log(stack, "still-serving")
    assert "v1-file-secret" not in logs and "v2-file-secret" not in logs and SECRET not in logs
    assert "GET api.test/still-serving 200" in logs and "route=api" in logs
    assert "error=upstream-timeout" in logs


# -- tokens, plain-http forwarding, shutdown -------------------------------------------------------------


@pytest.fixture(scope="module")
def token_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    from cordon_config.tokens import TokenStore

    holder: dict[str, str] = {}

    def make_tokens(config: Path) -> None:
        path, namespace = tokens_for(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        value = TokenStore.open(path).ensure("codex")
        holder["proxy_user"] = f"{namespace}:{value}"

    with running_stack(tmp_path_factory.mktemp("tokens"), before_start=make_tokens) as s:
        yield s, holder["proxy_user"]


def test_routed_connect_needs_a_valid_token(token_stack: tuple[Stack, str]) -> None:
    stack, user = token_stack
    url = f"https://api.test:{stack.upstream.port}/t"
    missing = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca), "-o", "/dev/null", "-w", "%{http_connect}", url)
    assert missing.stdout == "407"
    wrong = curl("-x", stack.proxy_url, "-U", "x:nope", "--cacert", str(stack.cordon_ca), "-o", "/dev/null",
                 "-w", "%{http_connect}", url)
    assert wrong.stdout == "407"
    good = curl("-x", stack.proxy_url, "-U", user, "--cacert", str(stack.cordon_ca), url)
    assert good.returncode == 0, good.stderr
    assert stack.upstream.requests[-1].header("Authorization") == [f"Bearer {SECRET}"]
    assert stack.upstream.requests[-1].header("Proxy-Authorization") == []
    assert "token=codex" in wait_for_log(stack, "token=codex")
    assert user.split(":", 1)[1] not in stack.proxy.logs()


@pytest.fixture(scope="module")
def unrouted_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    """A token stack inside a private network, where other.test (unrouted) resolves to an allowed address."""
    from cordon_config.tokens import TokenStore
    from cordon_testing.namespaces import PrivateNetwork

    holder: dict[str, str] = {}

    def make_tokens(config: Path) -> None:
        path, namespace = tokens_for(config)
        path.parent.mkdir(parents=True, exist_ok=True)
        holder["proxy_user"] = f"{namespace}:{TokenStore.open(path).ensure('codex')}"

    with PrivateNetwork() as network, running_stack(
        tmp_path_factory.mktemp("unrouted"), before_start=make_tokens, network=network
    ) as s:
        yield s, holder["proxy_user"]


def test_unrouted_tunnel_needs_a_valid_token(unrouted_stack: tuple[Stack, str]) -> None:
    stack, user = unrouted_stack
    url = f"https://other.test:{stack.upstream.port}/u"
    ok = stack.curl("-x", stack.proxy_url, "-U", user, "--cacert", str(stack.upstream_ca), url)
    assert ok.returncode == 0, ok.stderr
    for proxy_user in (("-U", "x:nope"), ()):
        refused = stack.curl("-x", stack.proxy_url, *proxy_user, "--cacert", str(stack.upstream_ca), "-o",
                             "/dev/null", "-w", "%{http_connect}", url)
        assert refused.stdout == "407"


def test_plain_http_unrouted_is_forwarded_without_proxy_headers(unrouted_stack: tuple[Stack, str]) -> None:
    stack, user = unrouted_stack
    with RecordingUpstream(tls=False, network=stack.network) as plain:
        result = stack.curl("-x", stack.proxy_url, "-U", user, "-H", "Proxy-Connection: keep-alive",
                            f"http://other.test:{plain.port}/p?q=1")
        assert result.returncode == 0, result.stderr
        (seen,) = plain.requests
    assert seen.path == "/p?q=1"
    assert seen.header("Host") == [f"other.test:{plain.port}"]
    assert not [n for n, _ in seen.headers if n.lower().startswith("proxy-")]


def test_sigterm_lets_the_request_in_flight_finish(tmp_path: Path) -> None:
    with RecordingUpstream() as up:
        up.handlers["/slow"] = lambda h, seen: (time.sleep(1.0), status(200, b"finished")(h, seen))
        ca = up.write_ca(tmp_path / "up.pem")
        port = free_port()
        config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")], upstream_ca_file=ca)
        env = dict(os.environ, CORDON_TEST_SECRET=SECRET)
        proxy = ProxyProcess(config, port, env=env).start()
        try:
            result: dict[str, object] = {}

            def client() -> None:
                result["r"] = curl("-x", proxy.url, "--cacert", str(tmp_path / "state/certs/ca-cert.pem"),
                                   f"https://api.test:{up.port}/slow")

            thread = threading.Thread(target=client)
            thread.start()
            deadline = time.monotonic() + TIMEOUT
            while not up.requests and time.monotonic() < deadline:
                time.sleep(0.02)
            assert up.requests, "request never reached the upstream"
            code = proxy.stop()
            thread.join(TIMEOUT)
        finally:
            proxy.stop()
    assert code == 0
    out = result["r"]
    assert out.returncode == 0 and out.stdout == "finished"  # type: ignore[attr-defined]
    assert "stopped" in proxy.logs()


def test_large_upload_with_expect_100_continue_is_streamed(stack: Stack, tmp_path: Path) -> None:
    payload = tmp_path / "upload.bin"
    payload.write_bytes(os.urandom(1 << 20) * 3)
    started = time.monotonic()
    result = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca), "-H", "Expect: 100-continue",
                  "-H", "Authorization: Bearer dummy", "--data-binary", f"@{payload}",
                  f"https://api.test:{stack.upstream.port}/upload")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["body_len"] == 3 << 20
    assert stack.upstream.requests[-1].body == payload.read_bytes()
    assert time.monotonic() - started < TIMEOUT  # no stall waiting for a 100 that never comes


def test_chunked_upload_is_forwarded_chunked(stack: Stack) -> None:
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"POST /chunked HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        for i in range(5):
            tls.sendall(b"4\r\n%04d\r\n" % i)
        tls.sendall(b"0\r\n\r\n")
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.1 200 ")
    seen = stack.upstream.requests[-1]
    assert seen.body == b"00000001000200030004"
    assert seen.header("Transfer-Encoding") == ["chunked"] and seen.header("Content-Length") == []


def test_half_close_through_an_unrouted_tunnel(unrouted_stack: tuple[Stack, str]) -> None:
    stack, user = unrouted_stack
    auth = "Basic " + base64.b64encode(user.encode()).decode()
    with RecordingUpstream(tls=False, network=stack.network) as plain, stack.connect() as raw:
        raw.sendall(f"CONNECT other.test:{plain.port} HTTP/1.1\r\nProxy-Authorization: {auth}\r\n\r\n".encode())
        assert raw.recv(4096).startswith(b"HTTP/1.1 200")
        raw.sendall(f"GET /half HTTP/1.1\r\nHost: other.test:{plain.port}\r\nConnection: close\r\n\r\n".encode())
        raw.shutdown(socket.SHUT_WR)  # EOF towards the upstream; the response must still come back
        answer = read_all(raw)
    assert answer.startswith(b"HTTP/1.1 200 ") and b'"path": "/half"' in answer


def early_413(h, seen) -> None:  # type: ignore[no-untyped-def]
    """Answer before reading a large body, then close (what servers do for an oversized request)."""
    body = b'{"error": "request too large"}'
    h.send_response(413)
    h.send_header("Content-Length", str(len(body)))
    h.send_header("Connection", "close")
    h.end_headers()
    h.wfile.write(body)
    h.wfile.flush()
    h.close_connection = True
    # lingering close, as real servers do: stop sending, then read and discard what is still coming, so the
    # kernel does not answer the unread upload with a reset that would destroy the response in flight
    h.connection.shutdown(socket.SHUT_WR)
    h.connection.settimeout(2.0)
    try:
        while h.rfile.read1(1 << 16):
            pass
    except OSError:
        pass


def test_early_response_to_a_large_upload_reaches_the_client(stack: Stack, tmp_path: Path) -> None:
    stack.upstream.handlers["/too-large"] = early_413
    stack.upstream.unread_body.add("/too-large")
    payload = tmp_path / "big.bin"
    payload.write_bytes(b"z" * (8 << 20))
    result = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca), "-H", "Expect:", "-o", "/dev/null",
                  "-w", "%{http_code}", "--data-binary", f"@{payload}", f"https://api.test:{stack.upstream.port}/too-large")
    assert result.stdout == "413"  # the upstream's own answer, not a 502 for the unfinished upload


def test_pipelined_requests_inside_the_tunnel_are_answered_in_order(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"GET /p1 HTTP/1.1\r\nHost: api.test\r\n\r\n"
                    b"POST /p2 HTTP/1.1\r\nHost: api.test\r\nContent-Length: 5\r\n\r\nhello"
                    b"GET /p3 HTTP/1.1\r\nHost: api.test\r\nConnection: close\r\n\r\n")
        answer = read_all(tls)
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert answer.index(b'"/p1"') < answer.index(b'"/p2"') < answer.index(b'"/p3"')
    seen = stack.upstream.requests[before:]
    assert [r.path for r in seen] == ["/p1", "/p2", "/p3"] and seen[1].body == b"hello"
    assert all(r.header("Authorization") == [f"Bearer {SECRET}"] for r in seen)


def test_http10_client_inside_the_tunnel(stack: Stack) -> None:
    with tunnel(stack, "api.test") as tls:
        tls.sendall(b"GET /old HTTP/1.0\r\nHost: api.test\r\n\r\n")
        answer = read_all(tls)
    assert answer.startswith(b"HTTP/1.0 200 OK\r\n") and answer.endswith(b"}")
    assert stack.upstream.requests[-1].header("Authorization") == [f"Bearer {SECRET}"]



UPLOAD = 16 << 20  # a request body larger than loopback socket buffers hold


def start_upload(sock: socket.socket) -> tuple[threading.Thread, list[str]]:
    """Send UPLOAD bytes of body from a thread; the list collects the error that ended it, if any. Returns
    after 0.3 s: a client busy uploading reads late, so the answer waits in its receive buffer."""
    errors: list[str] = []

    def upload() -> None:
        try:
            for _ in range(UPLOAD >> 16):
                sock.sendall(b"z" * (1 << 16))
        except OSError as exc:
            errors.append(type(exc).__name__)

    sender = threading.Thread(target=upload)
    sender.start()
    time.sleep(0.3)
    return sender, errors


def test_a_client_still_uploading_after_an_early_answer_is_not_reset(stack: Stack) -> None:
    """Lingering close: the proxy reads and discards the rest of the upload instead of closing under it (a close
    with unread bytes makes the kernel send a reset, which can destroy the answer before the client reads it)."""
    stack.upstream.handlers["/too-large"] = early_413
    stack.upstream.unread_body.add("/too-large")
    with tunnel(stack, "api.test") as tls:
        tls.sendall(f"POST /too-large HTTP/1.1\r\nHost: api.test\r\nContent-Length: {UPLOAD}\r\n\r\n".encode())
        sender, errors = start_upload(tls)
        answer = b""
        while b"request too large" not in answer:
            data = tls.recv(1 << 16)
            if not data:
                break
            answer += data
        sender.join(TIMEOUT)
        assert not sender.is_alive()
    assert answer.startswith(b"HTTP/1.1 413 ") and b"Connection: close" in answer
    assert errors == []  # the whole upload was accepted (and discarded), no reset
    assert "lingering close" in wait_for_log(stack, "lingering close")


def test_an_upload_refused_before_forwarding_is_read_off_too(stack: Stack) -> None:
    """A request answered by cordon itself (here: origin-form, not /health) while its body is still coming."""
    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT) as raw:
        raw.sendall(f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:{stack.proxy.port}\r\n"
                    f"Content-Length: {UPLOAD}\r\n\r\n".encode())
        sender, errors = start_upload(raw)
        answer = read_all(raw)
        sender.join(TIMEOUT)
        assert not sender.is_alive()
    assert answer.startswith(b"HTTP/1.1 400 ") and b"X-Cordon-Error: not-found" in answer
    assert errors == []  # plain HTTP: the proxy half-closed after the answer, then read the rest
