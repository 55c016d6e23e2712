"""`cordon run`: the command gets the env contract, its exit code, and a proxy only for its lifetime."""

from __future__ import annotations

import socket
import stat
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_setup.runner import RunError, proxy_healthy, run_command, run_with_proxy

FAKE_PROXY = textwrap.dedent(
    """\
    import json, signal, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    port, marker = int(sys.argv[1]), sys.argv[2]
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"status": "ok", "version": "test", "routes": 0}).encode()
            self.send_response(200 if self.path == "/health" else 400)
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
    assert not proxy_healthy(port)
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
        config_path=tmp_path / "cordon.toml",
        port=port,
        log_path=tmp_path / "log",
        start_argv=[sys.executable, str(script), str(port), str(marker)],
        start_timeout=20,
    )
    assert code == 3
    assert seen.read_text() == "200 /b.pem"
    assert marker.read_text() == "stopped"
    assert not proxy_healthy(port)


def test_proxy_that_never_gets_healthy_is_a_clear_error(tmp_path):
    port = _free_port()
    with pytest.raises(RunError) as info:
        run_with_proxy(
            [sys.executable, "-c", "raise SystemExit(0)"],
            env_contract={},
            config_path=tmp_path / "cordon.toml",
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
        run_with_proxy([sys.executable, "-c", "pass"], env_contract={}, config_path=tmp_path / "cordon.toml",
                       port=_free_port(), log_path=tmp_path / "log", start_argv=[sys.executable, "-c", script],
                       start_timeout=20)
    assert str(info.value).endswith('secret for route "a" unavailable: environment variable A_KEY is not set')
    assert info.value.hint == "check them with: cordon secret check"
    assert stat.S_IMODE((tmp_path / "log").stat().st_mode) == 0o600


def test_health_check_of_a_closed_port_is_false():
    assert proxy_healthy(_free_port(), timeout=0.5) is False


def test_default_proxy_argv_never_imports_the_proxy(tmp_path):
    from cordon_setup.runner import proxy_argv

    assert proxy_argv(Path("/c.toml")) == [sys.executable, "-m", "cordon_proxy", "start", "-c", "/c.toml"]
