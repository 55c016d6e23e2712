"""`cordon run`: the command gets the env contract, its exit code, and a proxy only for its lifetime.

The stand-in proxy answers /health as cordon does (cordon_config.identity.health_answer under the scope's key),
so the runner's identity check is the real one; a squatter (a listener answering like an old cordon) is
refused before the command runs.
"""

from __future__ import annotations

import os
import socket
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_config.identity import ensure_key, key_path
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_setup.runner import RunError, proxy_state, run_command, run_with_proxy

FAKE_PROXY = textwrap.dedent(
    """\
    import json, signal, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    from cordon_config.identity import health_answer
    port, marker, key = int(sys.argv[1]), sys.argv[2], open(sys.argv[3], "rb").read()
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            path, _, query = self.path.partition("?")
            doc = health_answer(key, query, {"pid": __import__("os").getpid(), "version": "test", "routes": 0})
            body = json.dumps(doc).encode()
            self.send_response(200 if path == "/health" else 400)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        def log_message(self, *a):
            pass
    server = HTTPServer(("127.0.0.1", port), H)
    def stop(*_):
        open(marker, "w").write("stopped")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    server.serve_forever()
    """
)


def _paths(tmp_path: Path) -> ScopePaths:
    paths = resolve_scope(None, tmp_path / "cordon.toml", env=dict(os.environ), cwd=tmp_path)
    ensure_key(paths)
    return paths


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_command_exit_code_and_env(tmp_path):
    out = tmp_path / "out"
    code = run_command(
        [
            sys.executable,
            "-c",
            f"import os; open({str(out)!r}, 'w').write(os.environ['HTTPS_PROXY']); raise SystemExit(7)",
        ],
        {"HTTPS_PROXY": "http://x", "PATH": "/usr/bin:/bin"},
    )
    assert code == 7 and out.read_text() == "http://x"
    with pytest.raises(RunError) as info:
        run_command(["/nonexistent/definitely-not-here"], {})
    assert info.value.code == 127


def test_starts_a_proxy_for_the_command_and_stops_it_after(tmp_path):
    port = _free_port()
    paths = _paths(tmp_path)
    assert proxy_state(paths, port).kind == "none"
    script = tmp_path / "fake_proxy.py"
    script.write_text(FAKE_PROXY)
    marker = tmp_path / "stopped"
    seen = tmp_path / "seen"
    check = (
        "import http.client, os, sys; c = http.client.HTTPConnection('127.0.0.1', int(sys.argv[1]), timeout=5); "
        "c.request('GET', '/health'); r = c.getresponse(); "
        f"open({str(seen)!r}, 'w').write(str(r.status) + ' ' + os.environ['SSL_CERT_FILE']); c.close(); sys.exit(3)"
    )
    code = run_with_proxy(
        [sys.executable, "-c", check, str(port)],
        env_contract={"SSL_CERT_FILE": "/b.pem"},
        paths=paths,
        port=port,
        log_path=tmp_path / "log",
        start_argv=[sys.executable, str(script), str(port), str(marker), str(key_path(paths))],
        start_timeout=20,
    )
    assert code == 3
    assert seen.read_text() == "200 /b.pem"
    assert marker.read_text() == "stopped"
    assert proxy_state(paths, port).kind == "none"


def test_a_squatter_on_the_port_gets_no_command_and_no_token(tmp_path):
    """With cordon down, something else listens on its port and answers /health like an old cordon."""
    import threading

    paths = _paths(tmp_path)
    seen: list[bytes] = []
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def squat() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                seen.append(conn.recv(65536))
                conn.sendall(b'HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\n{"status": "ok"}')

    thread = threading.Thread(target=squat, daemon=True)
    thread.start()
    ran = tmp_path / "ran"
    try:
        with pytest.raises(RunError) as info:
            run_with_proxy(
                [sys.executable, "-c", f"open({str(ran)!r}, 'w')"],
                env_contract={"HTTPS_PROXY": f"http://ns:the-token@127.0.0.1:{port}"},
                paths=paths,
                port=port,
                log_path=tmp_path / "log",
                start_timeout=5,
            )
    finally:
        server.close()
        thread.join(5)
    assert str(info.value).startswith(f"port {port} is held by something that is not this scope's cordon (pid ")
    assert "the command was not run" in str(info.value)
    assert not ran.exists()
    assert all(b"the-token" not in request and b"Proxy-Authorization" not in request for request in seen)


def test_proxy_that_never_gets_healthy_is_a_clear_error(tmp_path):
    port = _free_port()
    with pytest.raises(RunError) as info:
        run_with_proxy(
            [sys.executable, "-c", "raise SystemExit(0)"],
            env_contract={},
            paths=_paths(tmp_path),
            port=port,
            log_path=tmp_path / "log",
            start_argv=[sys.executable, "-c", "import sys; print('cordon: bad config'); sys.exit(1)"],
            start_timeout=20,
        )
    assert "did not become healthy" in str(info.value) and str(info.value).endswith(": bad config")
    assert info.value.hint and str(tmp_path / "log") in info.value.hint


def test_a_failed_start_shows_the_cause_and_the_proxys_own_hint(tmp_path):
    """The cause is the proxy's `cordon:` line, not the last line of the log (its hint); the hint is its own."""
    script = ("import sys; print('earlier run: cordon: old line'); print('cordon: secret for route \"a\" unavailable: "
              "environment variable A_KEY is not set'); print('hint: check them with: cordon secret check'); "
              "sys.exit(1)")
    (tmp_path / "log").write_text("cordon: from a previous start\n")
    with pytest.raises(RunError) as info:
        run_with_proxy([sys.executable, "-c", "pass"], env_contract={}, paths=_paths(tmp_path),
                       port=_free_port(), log_path=tmp_path / "log", start_argv=[sys.executable, "-c", script],
                       start_timeout=20)
    assert str(info.value).endswith('secret for route "a" unavailable: environment variable A_KEY is not set')
    assert info.value.hint == "check them with: cordon secret check"
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o600


def test_a_closed_port_is_nothing_running(tmp_path):
    assert proxy_state(_paths(tmp_path), _free_port(), timeout=0.5).kind == "none"


def test_default_proxy_argv_never_imports_the_proxy(tmp_path):
    from cordon_setup.runner import proxy_argv

    assert proxy_argv(Path("/c.toml")) == [sys.executable, "-m", "cordon_proxy", "start", "-c", "/c.toml"]
