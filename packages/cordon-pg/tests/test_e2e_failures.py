"""What a user sees when something is wrong, against a real PostgreSQL and a real ``cordon start``: wrong user,
wrong or missing secret (at start and later), server down, a certificate for another name, a server without
TLS, a taken port. Every message is cordon's own, with the fix; the password is in none of them."""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cordon_testing.postgres import (
    CLIENTS,
    ListenerSpec,
    PostgresServer,
    free_port,
    psql,
    write_listener_config,
)
from cordon_testing.proxy import ProxyProcess

pytestmark = pytest.mark.e2e

WRONG = "cordon-canary-wrong-password-9d2f"


class NoTLSServer:
    """A listener that answers an SSLRequest with 'N', like a PostgreSQL server with ssl = off."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                if conn.recv(8):
                    conn.sendall(b"N")
                conn.recv(1024)

    def close(self) -> None:
        self.sock.close()


@dataclass
class Stack:
    pg: PostgresServer
    proxy: ProxyProcess
    ports: dict[str, int]
    secret_file: Path
    outputs: list[str]


@pytest.fixture(scope="module")
def stack(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("pg-failures")
    secret_file = directory / "scram-password"
    secret_file.write_text(pg.passwords["scram_user"] + "\n", encoding="utf-8")
    secret_file.chmod(0o600)
    no_tls = NoTLSServer()
    dead = free_port()
    scram = {"source": "env", "var": "PW_SCRAM"}
    specs = [
        ListenerSpec("good", free_port(), f"localhost:{pg.port}", "scram_user", scram),
        ListenerSpec("wrong-secret", free_port(), f"localhost:{pg.port}", "scram_user",
                     {"source": "env", "var": "PW_WRONG"}),
        ListenerSpec("wrong-md5", free_port(), f"localhost:{pg.port}", "md5_user", {"source": "env", "var": "PW_WRONG"},
                     upstream_tls="disable"),
        ListenerSpec("from-file", free_port(), f"localhost:{pg.port}", "scram_user",
                     {"source": "file", "path": str(secret_file)}),
        ListenerSpec("down", free_port(), f"localhost:{dead}", "scram_user", scram),
        ListenerSpec("other-name", free_port(), f"127.0.0.1:{pg.port}", "scram_user", scram),
        ListenerSpec("no-tls", free_port(), f"localhost:{no_tls.port}", "scram_user", scram),
    ]
    listen = free_port()
    config = write_listener_config(directory, listen, specs, upstream_ca_file=pg.ca_pem, secret_ttl=0)
    env = dict(os.environ, PW_SCRAM=pg.passwords["scram_user"], PW_WRONG=WRONG)
    try:
        with ProxyProcess(config, listen, env=env) as proxy:
            yield Stack(pg, proxy, {s.name: s.port for s in specs}, secret_file, [])
    finally:
        no_tls.close()


def fails(stack: Stack, listener: str, user: str = "scram_user", client: str = "psql") -> str:
    result = CLIENTS[client](stack.ports[listener], user)
    stack.outputs.append(result.error + repr(result.rows))
    assert not result.ok, result.rows
    return result.error


@pytest.mark.parametrize("client", list(CLIENTS))
def test_wrong_user(stack: Stack, client: str) -> None:
    error = fails(stack, "good", "postgres", client)
    assert 'cordon: listener "good": user "postgres" given; listener "good" logs in as "scram_user" only' in error
    if client == "psql":
        assert "HINT:  connect with user=scram_user" in error


@pytest.mark.parametrize("listener", ["wrong-secret", "wrong-md5"])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_wrong_secret_is_cordons_28p01_never_the_servers_text(stack: Stack, listener: str, client: str) -> None:
    error = fails(stack, listener, "md5_user" if listener == "wrong-md5" else "scram_user", client)
    assert f'cordon: listener "{listener}": the server at localhost:{stack.pg.port} rejected the login' in error
    assert "SQLSTATE 28P01" in error
    assert "password authentication failed" not in error  # the server's own words never reach the client
    if client == "psql":
        assert f"cordon secret set {listener}" in error
    assert "cached password was dropped" in stack.proxy.logs()


def test_secret_gone_after_start(stack: Stack) -> None:
    result = psql(stack.ports["from-file"], "scram_user")
    assert result.ok, result.error
    stack.secret_file.rename(stack.secret_file.with_suffix(".moved"))
    try:
        error = fails(stack, "from-file")
        assert 'listener "from-file": the password is unavailable: file' in error and "does not exist" in error
    finally:
        stack.secret_file.with_suffix(".moved").rename(stack.secret_file)
    assert psql(stack.ports["from-file"], "scram_user").ok


@pytest.mark.parametrize("client", list(CLIENTS))
def test_upstream_down(stack: Stack, client: str) -> None:
    error = fails(stack, "down", client=client)
    assert 'listener "down": cannot reach the server at localhost:' in error


def test_upstream_certificate_for_another_name(stack: Stack) -> None:
    error = fails(stack, "other-name")
    assert 'listener "other-name": cannot verify TLS of the server at 127.0.0.1:' in error
    assert "certificate is not valid for '127.0.0.1'" in error
    assert "upstream_ca_file" in error  # the hint


def test_upstream_without_tls_under_verify_full(stack: Stack) -> None:
    error = fails(stack, "no-tls")
    assert "does not offer TLS" in error and 'upstream_tls = "disable"' in error


def test_a_cancel_request_for_no_session_is_dropped(stack: Stack) -> None:
    from cordon_pg import protocol as pq

    with socket.create_connection(("127.0.0.1", stack.ports["good"]), timeout=10) as sock:
        sock.sendall(pq.cancel_request(12345, b"\x00\x01\x02\x03"))
        assert sock.recv(100) == b""  # closed without a word, as PostgreSQL does
    assert psql(stack.ports["good"], "scram_user").ok


def test_garbage_gets_a_protocol_error(stack: Stack) -> None:
    from cordon_pg import protocol as pq

    with socket.create_connection(("127.0.0.1", stack.ports["good"]), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
    assert data[:1] == b"E" and pq.parse_error_fields(data[5:])["C"] == "08P01"


def test_canary(stack: Stack) -> None:
    fails(stack, "wrong-secret")  # a rejected login, whichever tests ran before this one
    stack.proxy.stop()  # its last log lines too
    try:
        seen = "\n".join([*stack.outputs, stack.proxy.logs()])
        for password in (*stack.pg.passwords.values(), WRONG):
            assert password not in seen
    finally:
        stack.proxy.start()  # the module's proxy again for the tests that run after this one


def test_start_refuses_a_listener_whose_secret_is_missing(pg: PostgresServer, tmp_path: Path) -> None:
    listen = free_port()
    spec = ListenerSpec("prod-db", free_port(), f"localhost:{pg.port}", "scram_user",
                        {"source": "env", "var": "PW_NOT_SET"})
    config = write_listener_config(tmp_path, listen, [spec], upstream_ca_file=pg.ca_pem)
    proxy = ProxyProcess(config, listen, env={k: v for k, v in os.environ.items() if k != "PW_NOT_SET"})
    proxy.start(wait=False)
    assert proxy.proc is not None
    proxy.proc.wait(30)
    assert proxy.stop() == 1
    logs = proxy.logs()
    assert 'cordon: secret for listener "prod-db" unavailable: environment variable PW_NOT_SET is not set' in logs
    assert "Traceback" not in logs


def test_start_names_a_taken_listener_port(pg: PostgresServer, tmp_path: Path) -> None:
    listen = free_port()
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        spec = ListenerSpec("prod-db", port, f"localhost:{pg.port}", "scram_user", {"source": "env", "var": "PW"})
        config = write_listener_config(tmp_path, listen, [spec], upstream_ca_file=pg.ca_pem)
        proxy = ProxyProcess(config, listen, env=dict(os.environ, PW="x"))
        proxy.start(wait=False)
        assert proxy.proc is not None
        proxy.proc.wait(30)
        assert proxy.stop() == 1
    logs = proxy.logs()
    assert f'cordon: port {port} on 127.0.0.1 (listener "prod-db") is already in use' in logs
    assert "cordon listener edit prod-db --port" in logs and "Traceback" not in logs


def test_start_refuses_a_listener_the_agent_redirected(pg: PostgresServer, tmp_path: Path) -> None:
    """SECURITY.md §E rule 2: the agent rewrites where the password goes; cordon start refuses until a human
    approves: no listener is served, so nothing can reach the new upstream."""
    from cordon_testing.config import approve_config

    listen = free_port()
    trap = NoTLSServer()  # the attacker's "database"
    try:
        spec = ListenerSpec("prod-db", free_port(), f"localhost:{pg.port}", "scram_user", {"source": "env", "var": "PW"})
        config = write_listener_config(tmp_path, listen, [spec], upstream_ca_file=pg.ca_pem)
        proxy = ProxyProcess(config, listen, env=dict(os.environ, PW=pg.passwords["scram_user"]), approve=False)
        approve_config(config, env=proxy.env, cwd=tmp_path)  # the human approved the real upstream
        config.write_text(config.read_text().replace(f"localhost:{pg.port}", f"127.0.0.1:{trap.port}"))
        proxy.start(wait=False)
        assert proxy.proc is not None
        proxy.proc.wait(30)
        assert proxy.stop() == 1
        logs = proxy.logs()
        assert 'listener "prod-db" changed since it was approved (upstream' in logs
        assert "cordon listener approve" in logs and "prod-db" in logs
        assert pg.passwords["scram_user"] not in logs
    finally:
        trap.close()
