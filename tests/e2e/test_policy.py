"""End to end through the real proxy: least privilege per route and evidence of every use of a key.

The agent's moves, and what reached the upstream, the client, the log and the audit log:
* a request outside the route's method/path rules (or spelled ambiguously) → 403 route-policy, the
  upstream sees nothing;
* more requests than the route's rate limit → 429 with Retry-After;
* a host without a route under ``[egress] unrouted = "deny"`` → 403 egress-denied naming the command;
* an upstream that echoes the injected key in a header, a plain body, a chunked body split mid-key, a gzip
  and a br body → the client never gets the key (masked, or the compressed response cut);
* every routed request and decision is one chained line of the audit log, which verifies.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import ssl
import stat
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_config.audit import AuditFiles, read_entries, verify
from cordon_testing.proxy import RouteSpec, Stack, echo_key, running_stack, state_dir_for

pytestmark = pytest.mark.e2e

SECRET = "sk-policy-secret-0123456789abcdef"
DUMMY = "dummy-replaced-by-cordon"
ROUTES = [
    RouteSpec("api", "api.test", "CORDON_TEST_SECRET", methods=("POST", "GET"),
              paths=("/v1/responses", "/v1/models*", "/echo/*"), requests_per_minute=600, burst=100),
    RouteSpec("slow", "other.test", "CORDON_TEST_SECRET", header_name="x-api-key", scheme=None,
              requests_per_minute=60, burst=2),
    # the stack's own 429 for the audit log, so the "slow" bucket is whole for the rate-limit test
    RouteSpec("audited", "third.test", "CORDON_TEST_SECRET", requests_per_minute=1, burst=1),
]
EGRESS = '[egress]\nunrouted = "deny"\nallow = ["192.0.2.1", "*.allowed.test"]\n'


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("policy")
    # [egress] must come before the [tls] table write_config adds: give it as the tail of the top-level keys
    with running_stack(directory, ROUTES, {"CORDON_TEST_SECRET": SECRET}, extra_config="",
                       before_start=_add_egress) as s:
        for form in ("plain", "chunked", "gzip", "br"):
            s.upstream.handlers[f"/echo/{form}"] = echo_key(form)
        # each decision the audit log records, once, whichever test runs first (the audit tests read them)
        _request(s, "GET", "/v1/responses")  # injected
        _request(s, "PUT", "/v1/responses")  # denied
        _request(s, "GET", "/echo/plain")  # scrubbed
        for _ in range(2):
            _request(s, "GET", "/audited", host="third.test")  # the second: rate-limited
        yield s


def _add_egress(config: Path) -> None:
    config.write_text(config.read_text(encoding="utf-8") + "\n" + EGRESS, encoding="utf-8")


def _connection(stack: Stack, host: str = "api.test") -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", stack.proxy.port, context=ctx, timeout=10)
    conn.set_tunnel(host, stack.upstream.port)
    return conn


def _request(stack: Stack, method: str, path: str, host: str = "api.test",
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = _connection(stack, host)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {DUMMY}", **(headers or {})})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def _wait_for(predicate: object, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


# -- method and path rules --------------------------------------------------------------------------------


def test_allowed_request_is_injected(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    status, _, body = _request(stack, "GET", "/v1/models/gpt-4?limit=1")
    assert status == 200 and json.loads(body)["path"] == "/v1/models/gpt-4?limit=1"
    (seen,) = stack.upstream.requests[before:]
    assert seen.header("Authorization") == [f"Bearer {SECRET}"]


@pytest.mark.parametrize(("method", "path"), [
    ("DELETE", "/v1/models/gpt-4"),
    ("GET", "/v1/files"),
    ("GET", "/v1/models/../files"),
    ("GET", "/v1/models%2F..%2Ffiles"),
    ("GET", "/v1/models/..;/files"),
])
def test_requests_outside_the_rules_never_reach_the_upstream(stack: Stack, method: str, path: str) -> None:
    before = len(stack.upstream.requests)
    status, headers, body = _request(stack, method, path)
    assert status == 403 and headers["X-Cordon-Error"] == "route-policy"
    assert body.startswith(b'cordon: route "api" ')
    assert stack.upstream.requests[before:] == []


# -- rate limit ------------------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(stack: Stack) -> None:
    before = len(stack.upstream.requests)
    answers = [_request(stack, "GET", "/limited", host="other.test") for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    _, headers, body = answers[2]
    assert headers["X-Cordon-Error"] == "rate-limited" and int(headers["Retry-After"]) >= 1
    assert b"allows 60 requests per minute" in body
    assert len(stack.upstream.requests[before:]) == 2
    _wait_for(lambda: "error=rate-limited" in stack.proxy.logs(), "the 429 in the log")


# -- egress ---------------------------------------------------------------------------------------------


def _connect(stack: Stack, target: str) -> bytes:
    import socket

    with socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=10) as sock:
        sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    return data


def test_egress_deny_refuses_hosts_without_a_route_and_names_the_command(stack: Stack) -> None:
    # literal addresses: refused before any lookup or connection, nothing leaves the machine
    answer = _connect(stack, "93.184.216.34:443")
    assert answer.startswith(b"HTTP/1.1 403 ") and b"X-Cordon-Error: egress-denied" in answer
    assert b"egress to 93.184.216.34 is denied" in answer and b"cordon egress allow 93.184.216.34" in answer
    named = _connect(stack, "evil.test:443")
    assert b"X-Cordon-Error: egress-denied" in named and b"cordon egress allow evil.test" in named


def test_an_allowed_host_goes_on_to_the_ssrf_check(stack: Stack) -> None:
    answer = _connect(stack, "192.0.2.1:443")  # allowed by [egress], refused by the SSRF policy (documentation)
    assert b"X-Cordon-Error: blocked" in answer and b"documentation address" in answer


def test_a_routed_host_is_never_an_egress_question(stack: Stack) -> None:
    status, _, _ = _request(stack, "GET", "/v1/models")
    assert status == 200


# -- the key never comes back ------------------------------------------------------------------------------


@pytest.mark.parametrize("form", ["plain", "chunked"])
def test_an_echoed_key_reaches_the_client_masked(stack: Stack, form: str) -> None:
    status, headers, body = _request(stack, "GET", f"/echo/{form}")
    assert status == 200
    everything = json.dumps(headers).encode() + body
    assert SECRET.encode() not in everything
    assert base64.b64encode(SECRET.encode()).decode()[:30].encode() not in everything
    assert headers["X-Echo"] == "Bearer " + "*" * len(SECRET)
    document = json.loads(body)
    assert document["authorization"] == "Bearer " + "*" * len(SECRET)
    if form == "plain":
        assert int(headers["Content-Length"]) == len(body)  # masked in place: same length


@pytest.mark.parametrize("form", ["gzip", "br"])
def test_an_echoed_key_in_a_compressed_body_cuts_the_response(stack: Stack, form: str) -> None:
    if form == "br":
        pytest.importorskip("brotli", reason="brotli (cordon-proxy[compression]) is not installed")
    conn = _connection(stack)
    received = b""
    try:
        conn.request("GET", f"/echo/{form}", headers={"Authorization": f"Bearer {DUMMY}",
                                                      "Accept-Encoding": form})
        response = conn.getresponse()
        assert response.status == 200 and response.getheader("X-Echo") == "Bearer " + "*" * len(SECRET)
        length = int(response.getheader("Content-Length") or 0)
        try:
            while chunk := response.read(1):
                received += chunk
        except (http.client.IncompleteRead, ConnectionError, ssl.SSLError):
            pass  # a reset shows as one of these, or as an early end of the body
    finally:
        conn.close()
    assert len(received) < length, "the response completed although it held the key"
    assert SECRET.encode() not in received
    if form == "gzip":
        visible = zlib.decompressobj(31).decompress(received)
        assert SECRET.encode()[:4] not in visible  # not even the start of the key got out
    _wait_for(lambda: "error=key-in-response" in stack.proxy.logs(), "the cut in the log")


def test_the_key_never_appears_in_the_logs(stack: Stack) -> None:
    assert SECRET not in stack.proxy.logs()


# -- audit ---------------------------------------------------------------------------------------------


def test_every_routed_request_and_decision_is_audited_and_the_chain_verifies(stack: Stack) -> None:
    _request(stack, "GET", "/v1/responses")
    _request(stack, "PUT", "/v1/responses")
    files = AuditFiles(state_dir_for(stack.proxy.config_path))

    def logged() -> bool:
        entries = list(read_entries(files))
        return any(e.get("method") == "PUT" and e.get("decision") == "denied" for e in entries)

    _wait_for(logged, "the audit lines")
    entries = list(read_entries(files))
    decisions = {e["decision"] for e in entries if e["kind"] == "request"}
    assert {"injected", "denied", "scrubbed", "rate-limited"} <= decisions
    request = next(e for e in entries if e.get("path") == "/v1/responses" and e.get("method") == "GET")
    assert (request["route"], request["host"], request["status"], request["scope"]) == (
        "api", "api.test", 200, files.state_dir.name)
    assert entries[0]["kind"] == "file" and entries[1]["kind"] == "start"
    raw = files.log.read_bytes()
    assert SECRET.encode() not in raw and DUMMY.encode() not in raw and b"limit=1" not in raw
    assert stat.S_IMODE(files.log.stat().st_mode) == 0o600 and stat.S_IMODE(files.key.stat().st_mode) == 0o600
    report = verify(files)
    assert report.ok, report.problems


def test_cordon_audit_verify_and_tail_on_the_running_proxy(stack: Stack) -> None:
    env = {**os.environ, "HOME": str(stack.proxy.config_path.parent / "home"),
           "XDG_CONFIG_HOME": str(stack.proxy.config_path.parent / "home" / ".config")}
    config = str(stack.proxy.config_path)
    run = [sys.executable, "-m", "cordon_config"]
    result = subprocess.run([*run, "audit", "verify", "--config", config], capture_output=True, text=True,
                            env=env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "chain intact" in result.stdout
    tail = subprocess.run([*run, "audit", "tail", "-n", "5", "--config", config], capture_output=True, text=True,
                          env=env, timeout=30)
    assert tail.returncode == 0 and len(tail.stdout.splitlines()) == 5


def test_a_reload_switches_the_audit_log_and_keeps_the_rate_limit(tmp_path: Path) -> None:
    """`[audit]` follows a reload both ways (a `stop` line, then nothing; a `start` line again), and a route's
    rate-limit bucket survives it (a reload must not refill it)."""
    import signal

    from cordon_testing.config import approve_config

    routes = [RouteSpec("api", "api.test", "CORDON_TEST_SECRET", requests_per_minute=60, burst=1)]
    with running_stack(tmp_path, routes, {"CORDON_TEST_SECRET": SECRET}) as stack:
        files = AuditFiles(state_dir_for(stack.proxy.config_path))
        assert _request(stack, "GET", "/one")[0] == 200
        config = stack.proxy.config_path

        def reload_with(extra: str, expect: str) -> None:
            text = config.read_text(encoding="utf-8").split("\n[audit]")[0]
            config.write_text(text + extra, encoding="utf-8")
            approve_config(config, env=stack.proxy.env, cwd=config.parent)  # the person approves the edit
            assert stack.proxy.proc is not None
            os.kill(stack.proxy.proc.pid, signal.SIGHUP)
            _wait_for(lambda: stack.proxy.logs().count("reloaded:") >= expect.count("x"), "the reload")

        reload_with("\n[audit]\nenabled = false\n", "x")
        _wait_for(lambda: any(e.get("kind") == "stop" for e in read_entries(files)), "the stop line")
        assert _request(stack, "GET", "/two")[0] == 429  # the bucket (burst 1) is as empty as before the reload
        time.sleep(0.5)
        count = len(list(read_entries(files)))
        reload_with("\n[audit]\nenabled = true\n", "xx")
        _wait_for(lambda: [e["kind"] for e in read_entries(files)][-1:] == ["start"], "the start line")
        assert count == len(list(read_entries(files))) - 1  # the 429 while it was off left no line
        assert verify(files).ok
