"""The command line: help, start-order failures with clear messages, status and wait."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_proxy.cli import build_parser, main, status_main, wait_main
from cordon_testing.proxy import (
    ProxyProcess,
    RouteSpec,
    approve_as_user,
    curl,
    free_port,
    health_ok,
    running_stack,
    write_config,
)


def run_start(config: Path, env: dict[str, str] | None = None, timeout: float = 20, *, approve: bool = True
              ) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ if env is None else env)
    full.setdefault("HOME", str(config.parent))
    full["XDG_CONFIG_HOME"] = str(config.parent / ".config")
    if approve:
        approve_as_user(config, full)
    return subprocess.run(
        [sys.executable, "-m", "cordon_proxy", "start", "-c", str(config)],
        capture_output=True, text=True, env=full, timeout=timeout,
    )


@pytest.mark.parametrize("command", ["start", "status", "wait"])
def test_every_command_has_help_with_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([command, "--help"], prog="cordon")
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and f"cordon {command}" in out


def test_parser_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser("cordon-proxy").prog == "cordon-proxy"
    with pytest.raises(SystemExit) as info:
        main(["start", "--log-level", "loud"])
    assert info.value.code == 2
    assert capsys.readouterr().err.startswith("cordon: ")
    with pytest.raises(SystemExit) as info:
        main(["start", "--scope", "user", "--config", "x.toml"])
    assert info.value.code == 2


def test_start_with_invalid_config_reports_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "cordon.toml"
    config.write_text('listen = "x"\nbogus = 1\n')
    result = run_start(config)
    assert result.returncode == 1
    assert "listen" in result.stderr and "bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_start_with_missing_config_is_a_clear_error(tmp_path: Path) -> None:
    result = run_start(tmp_path / "nope.toml")
    assert result.returncode in (1, 2)
    assert result.stderr.startswith("cordon: ") and "Traceback" not in result.stderr


def test_start_reports_all_missing_secrets_together(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), [RouteSpec("one", "one.test", "CORDON_NOPE_1"),
                                                  RouteSpec("two", "two.test", "CORDON_NOPE_2")])
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORDON_NOPE")}
    result = run_start(config, env)
    assert result.returncode == 1
    assert 'route "one"' in result.stderr and 'route "two"' in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "state" / "certs" / "ca-key.pem").exists()  # secrets are checked before the CA


def test_start_with_port_taken_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
        result = run_start(config, dict(os.environ, CORDON_TEST_SECRET="x-secret"))
    assert result.returncode == 1
    assert f"cordon: port {port} on 127.0.0.1 is already in use" in result.stderr
    assert (tmp_path / "state" / "certs" / "ca-key.pem").exists()  # the CA was created before binding
    assert oct((tmp_path / "state" / "certs" / "ca-key.pem").stat().st_mode & 0o777) == "0o600"


def test_start_refuses_a_group_readable_ca_key(tmp_path: Path) -> None:
    env = dict(os.environ, CORDON_TEST_SECRET="x-secret")
    key = tmp_path / "state" / "certs" / "ca-key.pem"
    with socket.socket() as blocker:  # a first start creates the CA (0600), then stops at the taken port
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        config = write_config(tmp_path, blocker.getsockname()[1], [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
        assert run_start(config, env).returncode == 1 and key.exists()
    key.chmod(0o640)
    config = write_config(tmp_path, free_port(), [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
    result = run_start(config, env)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("cordon: ")]
    assert len(errors) == 1 and str(key) in result.stderr, result.stderr
    assert f"chmod 600 {key}" in result.stderr
    assert "listening" not in result.stderr
    assert key.stat().st_mode & 0o777 == 0o640  # refused, not silently "fixed"


def test_status_and_wait_when_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, free_port(), [])
    assert status_main(["-c", str(config), "--quiet"]) == 1
    assert capsys.readouterr().out == ""
    assert status_main(["-c", str(config), "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["running"] is False and data["config"] == str(config)
    assert wait_main(["-c", str(config), "--timeout", "0.2"]) == 1
    assert "no proxy answered" in capsys.readouterr().err


def test_status_and_wait_when_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")])
    proxy = ProxyProcess(config, port, env=dict(os.environ, CORDON_TEST_SECRET="x-secret"))
    proxy.start(wait=False)
    try:
        assert wait_main(["-c", str(config), "--timeout", "15"]) == 0
        assert status_main(["-c", str(config), "--quiet"]) == 0
        assert status_main(["-c", str(config), "--json"]) == 0
        out = capsys.readouterr().out.strip().splitlines()[-1]
        data = json.loads(out)
        assert data == {"running": True, "state": "ours", "port": port, "config": str(config), "routes": 1,
                        "version": data["version"], "pid": proxy.proc.pid, "config_current": True,
                        "config_digest": data["config_digest"], "held_by": None}
        assert status_main(["-c", str(config)]) == 0
        assert f"cordon is running on 127.0.0.1:{port} (pid {proxy.proc.pid}, " in capsys.readouterr().out
    finally:
        assert proxy.stop() == 0
    assert "no proxy tokens" in proxy.logs()  # tokens.toml absent: one warning


def test_json_log_format(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, [])
    proxy = ProxyProcess(config, port, args=("--log-format", "json", "--log-level", "debug")).start()
    proxy.stop()
    lines = [json.loads(line) for line in proxy.logs().splitlines() if line.strip()]
    health = [x for x in lines if x.get("path") == "/health"]
    assert health and health[0]["status"] == 200 and {"time", "level", "route", "token", "method", "host",
                                                       "bytes", "duration_ms"} <= set(health[0])
    assert health[0]["level"] == "debug"  # every status/wait/hook asks: not an INFO line each


def test_health_checks_are_not_logged_at_info(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, [])
    proxy = ProxyProcess(config, port, args=("--log-level", "info")).start()  # start() polls /health
    for _ in range(3):
        assert health_ok(port)
    proxy.stop()
    assert "listening on" in proxy.logs() and "/health" not in proxy.logs()


def test_trace_logging_shows_connection_events_but_no_secret_or_query(tmp_path: Path) -> None:
    from cordon_testing.proxy import RecordingUpstream

    secret = "sk-trace-canary-7f3a9"
    with RecordingUpstream() as up:
        ca = up.write_ca(tmp_path / "up.pem")
        port = free_port()
        config = write_config(tmp_path, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")], upstream_ca_file=ca)
        proxy = ProxyProcess(config, port, env=dict(os.environ, CORDON_TEST_SECRET=secret),
                             args=("--log-level", "trace")).start()
        try:
            result = curl("-x", proxy.url, "--cacert", str(tmp_path / "state/certs/ca-cert.pem"),
                          "-H", "Authorization: Bearer dummy-key", f"https://api.test:{up.port}/v1/x?token=q")
            assert result.returncode == 0, result.stderr
        finally:
            proxy.stop()
    logs = proxy.logs()
    assert "TRACE event kind=ClientData" in logs and "DEBUG client TLS established host=api.test" in logs
    assert "GET api.test/v1/x 200" in logs
    assert secret not in logs and "dummy-key" not in logs and "token=q" not in logs


def _loop_lines(logs: str) -> list[str]:
    return [line.split(" INFO  ", 1)[-1] for line in logs.splitlines() if "event loop:" in line]


def test_start_logs_the_event_loop_once_uvloop_when_importable(tmp_path: Path) -> None:
    expected = "uvloop" if importlib.util.find_spec("uvloop") is not None else "asyncio"
    port = free_port()
    proxy = ProxyProcess(write_config(tmp_path, port, []), port, args=("--log-level", "info")).start()
    assert proxy.stop() == 0
    assert _loop_lines(proxy.logs()) == [f"event loop: {expected}"], proxy.logs()
    assert f" loop={expected}" in proxy.logs()  # the loop that actually ran (the "listening" line)


def test_without_uvloop_the_stdlib_loop_serves_routed_requests(tmp_path: Path) -> None:
    hide = tmp_path / "no-uvloop" / "uvloop"  # shadows an installed uvloop: `import uvloop` raises ImportError
    hide.mkdir(parents=True)
    (hide / "__init__.py").write_text('raise ImportError("uvloop hidden by the test")\n')
    pythonpath = os.pathsep.join(filter(None, [str(hide.parent), os.environ.get("PYTHONPATH")]))
    with running_stack(tmp_path, env=dict(os.environ, PYTHONPATH=pythonpath)) as stack:
        result = curl("-x", stack.proxy_url, "--cacert", str(stack.cordon_ca),
                      f"https://api.test:{stack.upstream.port}/v1/loop")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["path"] == "/v1/loop"
        (seen,) = stack.upstream.requests
        assert seen.header("Authorization") == [f"Bearer {stack.secrets['CORDON_TEST_SECRET']}"]
    assert _loop_lines(stack.proxy.logs()) == ["event loop: asyncio"], stack.proxy.logs()
    assert " loop=asyncio" in stack.proxy.logs() and "GET api.test/v1/loop 200" in stack.proxy.logs()
