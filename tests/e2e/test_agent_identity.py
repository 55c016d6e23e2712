"""The agent is the adversary: proxy identity before trust (SECURITY.md §E rule 3: whose proxy is it).

Attack: with cordon down, a process listens on the scope's port and answers ``/health`` like cordon did. Then
every client of cordon (status, wait, run, doctor, the Claude Code hook, service status) is tried; the squatter
records every byte it receives, and must never see the proxy token. Then two real projects, A and B, each
with its real proxy (``cordon start``), on one port and on two: ``status`` and ``doctor`` must name the right
proxy in every combination of running and stopped.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator

import pytest
from cordon_config.identity import key_path
from cordon_config.scope import resolve_scope
from cordon_testing.project import Project as PlainProject
from cordon_testing.proxy import RecordingUpstream, free_port, read_head

pytestmark = pytest.mark.e2e

OLD_HEALTH = b'{"status": "ok", "version": "0.1.0", "routes": 1}'


class Squatter:
    """A real listener on a port that answers every request like cordon 0.1's /health and records it."""

    def __init__(self, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        self.port = port
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.received.append(read_head(conn))
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                                 % (len(OLD_HEALTH), OLD_HEALTH))
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()
        self.thread.join(5)


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        yield up


def test_a_squatter_is_named_by_every_client_and_never_gets_the_token(projects, upstream, tmp_path) -> None:
    port = free_port()
    a = projects("a").setup(port, upstream.write_ca(tmp_path / "up-ca.pem"))
    token = a.token()
    squatter = Squatter(port)
    try:
        expected = f"port {port} is held by something that is not this scope's cordon (pid {os.getpid()}: "
        status = a.cordon("status")
        assert status.returncode == 1 and status.stderr.startswith(f"cordon: {expected}"), status
        assert a.cordon("status", "--quiet").returncode == 1
        state = json.loads(a.cordon("status", "--json").stdout)
        assert state["running"] is False and state["state"] == "foreign" and state["pid"] is None
        waited = a.cordon("wait", "--timeout", "0.5")
        assert waited.returncode == 1 and expected in waited.stderr
        ran = a.cordon("run", "--", "sh", "-c", "echo RAN")
        assert ran.returncode == 1 and "RAN" not in ran.stdout and expected in ran.stderr
        doctor = a.cordon("doctor")
        assert doctor.returncode == 1 and f"FAIL port: {expected}" in doctor.stdout
        service = a.cordon("service", "status")
        assert f"proxy: {expected}" in service.stdout
        a.must("setup", "claude-code", "--yes")  # its hook, run as Claude Code runs it before each prompt
        settings = json.loads((a.dir / ".claude" / "settings.local.json").read_text())
        command = settings["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"]
        blocked = subprocess.run(["sh", "-c", command], cwd=a.dir, env=a.env, capture_output=True, text=True,
                                 timeout=60)
        assert blocked.returncode == 2 and expected in blocked.stderr
    finally:
        squatter.close()
    everything = b"".join(squatter.received)
    assert squatter.received, "no client talked to the squatter"
    assert token.encode() not in everything and b"proxy-authorization" not in everything.lower()
    assert all(b"GET /health?nonce=" in request for request in squatter.received)


def test_health_says_only_ok_without_a_nonce_and_details_only_with_the_scopes_key(projects, upstream,
                                                                                   tmp_path) -> None:
    port = free_port()
    a = projects("a").setup(port, upstream.write_ca(tmp_path / "up-ca.pem")).start()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b'\r\n\r\n{"status":"ok"}')
    status = json.loads(a.must("status", "--json").stdout)
    assert status["running"] is True and status["pid"] == a.proc.pid and status["routes"] == 1
    assert status["config_digest"].startswith("sha256:") and status["config_current"] is True


def _start(project, wanted: bool) -> None:
    if wanted and project.proc is None:
        project.start()
    elif not wanted:
        project.stop()


@pytest.mark.parametrize("same_port", [True, False], ids=["one-port", "two-ports"])
def test_status_and_doctor_name_the_right_proxy_in_every_combination(projects, upstream, tmp_path,
                                                                     same_port: bool) -> None:
    ca = upstream.write_ca(tmp_path / "up-ca.pem")
    port_a = free_port()
    port_b = port_a if same_port else free_port()
    a = projects("a").setup(port_a, ca)
    b = projects("b").setup(free_port() if same_port else port_b, ca)
    if same_port:
        b.share_port(port_a)  # cordon setup refuses another scope's port: as two 0.1 scopes could be
    combos = [(True, False), (False, True), (False, False)] + ([] if same_port else [(True, True)])
    for run_a, run_b in combos:
        _start(a, False), _start(b, False)
        _start(a, run_a), _start(b, run_b)
        for me, other, mine_runs, other_runs in ((a, b, run_a, run_b), (b, a, run_b, run_a)):
            port = port_a if me is a else port_b
            status, doctor = me.cordon("status"), me.cordon("doctor")
            case = f"{me.dir.name} with a={'up' if run_a else 'down'}, b={'up' if run_b else 'down'}"
            if mine_runs:
                assert status.returncode == 0, case
                assert status.stdout.startswith(f"cordon is running on 127.0.0.1:{port} (pid {me.proc.pid}, "), case
                assert f"config: {me.config} (sha256:" in status.stdout, case
                assert "ok   port: cordon " in doctor.stdout and f"(pid {me.proc.pid})" in doctor.stdout, case
            elif same_port and other_runs:
                line = f"another scope's cordon ({other.config}) holds port {port}"
                assert status.returncode == 1 and status.stderr.startswith(f"cordon: {line}"), case
                assert f"hint: cordon stop --config {other.config}" in status.stderr, case
                assert f"FAIL port: {line}" in doctor.stdout, case
                run = me.cordon("run", "--", "true")
                assert run.returncode == 1 and line in run.stderr, case
                assert line in me.cordon("wait", "--timeout", "0.3").stderr, case
            else:
                assert status.returncode == 1 and status.stdout.startswith(
                    f"cordon is not running on 127.0.0.1:{port}"), case
                assert f"ok   port: 127.0.0.1:{port} is free" in doctor.stdout, case


def test_an_identity_key_others_could_read_is_refused_by_start_status_and_doctor(tmp_path) -> None:
    """The same refusal, one line and the way to replace the key, from every command that reads the key."""
    project = PlainProject(tmp_path / "loose").setup("--port", str(free_port()))
    key = key_path(resolve_scope(None, None, env=project.env, cwd=project.dir))
    assert key.exists()
    key.chmod(0o644)
    line = f"{key} is accessible by group or others (mode 0644); a copy of it would pass as this scope's cordon"
    hint = f"replace it: stop this scope's cordon, rm {shlex.quote(str(key))}, and start it again"
    for args in (("start",), ("status",), ("doctor",)):
        result = project.run(*args, check=False)
        out = result.stdout + result.stderr
        assert result.returncode != 0, (args, out)
        assert line in out and hint in out, (args, out)
        assert "Traceback" not in out
    assert stat.S_IMODE(key.stat().st_mode) == 0o644  # refused, not quietly made 0600 and trusted


def test_wait_fails_at_the_first_answer_proven_not_to_be_this_scopes_cordon(projects, upstream, tmp_path) -> None:
    """A squatter answers /health without this scope's proof: waiting longer cannot change that, so `cordon wait`
    fails on that first answer (one request, not a poll of proofs until the timeout)."""
    port = free_port()
    a = projects("a").setup(port, upstream.write_ca(tmp_path / "up-ca.pem"))
    squatter = Squatter(port)
    try:
        waited = a.cordon("wait", "--timeout", "60")
    finally:
        squatter.close()
    assert waited.returncode == 1
    assert f"cordon: port {port} is held by something that is not this scope's cordon" in waited.stderr
    assert len(squatter.received) == 1, f"{len(squatter.received)} proof requests"
