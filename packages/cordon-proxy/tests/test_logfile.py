"""`cordon start --log-file`, `cordon logs`, and how `cordon start` stops and fails."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_proxy.logfile import tail_lines
from cordon_testing.proxy import (
    TIMEOUT,
    RecordingUpstream,
    approve_as_user,
    default_signals,
    free_port,
    health_ok,
    write_config,
)

pytestmark = pytest.mark.e2e

TOOL = Path(sys.executable).parent / "cordon-proxy"  # this member's own script (`cordon X` is the same command)


def start(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`python -m cordon_proxy start -c CONFIG ARGS` with the test's HOME, the config approved as its user would;
    stdout+stderr captured."""
    approve_as_user(config, {**os.environ, **(env or {})})
    return subprocess.Popen([sys.executable, "-m", "cordon_proxy", "start", "-c", str(config), *args],
                            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_healthy(proc: subprocess.Popen[str], port: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[0]
        if health_ok(port, timeout=0.5):
            return
        time.sleep(0.05)
    raise AssertionError("the proxy did not answer /health")


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """A start that is expected to fail by itself: its exit code and output."""
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def test_log_file_is_private_appended_and_found_by_cordon_logs(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path, port, [])
    log = tmp_path / "logs" / "cordon.log"
    for _ in range(2):
        proc = start(config, "--log-file", str(log))
        wait_healthy(proc, port)
        code, out = stop(proc)
        assert code == 0 and "listening on" not in out  # the log went to the file, not to stderr
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert log.read_text().count("listening on 127.0.0.1") == 2  # appended, not replaced
    logs = subprocess.run([str(TOOL), "logs", "-c", str(config), "-n", "2"], capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert logs.returncode == 0 and logs.stdout.splitlines() == log.read_text().splitlines()[-2:]
    where = subprocess.run([str(TOOL), "logs", "-c", str(config), "--path"], capture_output=True, text=True,
                           timeout=TIMEOUT)
    assert where.stdout.strip() == str(log)


def test_errors_of_a_start_go_to_the_log_file_and_the_terminal(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), [])
    config.write_text(config.read_text() + "\nbogus_key = 1\n")
    log = tmp_path / "cordon.log"
    proc = start(config, "--log-file", str(log))
    code, out = finish(proc)
    assert code == 1 and 'unknown key "bogus_key"' in out and 'unknown key "bogus_key"' in log.read_text()


def test_a_log_file_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep\n")
    link = tmp_path / "cordon.log"
    link.symlink_to(target)
    proc = start(write_config(tmp_path, free_port(), []), "--log-file", str(link))
    code, out = finish(proc)
    assert code == 1 and f"is a symlink to {target}" in out and target.read_text() == "keep\n"


def test_cordon_logs_follows_new_lines(tmp_path: Path) -> None:
    config = write_config(tmp_path, free_port(), [])
    paths = resolve_scope(None, config, env=os.environ, cwd=tmp_path)
    paths.state_dir.mkdir(parents=True)
    log = paths.state_dir / "proxy.log"
    log.write_text("one\ntwo\n")
    follower = subprocess.Popen([str(TOOL), "logs", "-c", str(config), "-f", "-n", "1"], stdout=subprocess.PIPE,
                                text=True, preexec_fn=default_signals)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + TIMEOUT
        while lines != ["two\n"] and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(log, "a") as handle:
            handle.write("three\n")
        while lines != ["two\n", "three\n"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lines == ["two\n", "three\n"]
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(TIMEOUT)
        follower.stdout.close()
    assert follower.returncode == 0  # Ctrl-C is how -f ends


def test_tail_lines_reads_only_the_end(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {i}\n" for i in range(20000)))
    lines, end = tail_lines(log, 3)
    assert lines == ["line 19997", "line 19998", "line 19999"] and end == log.stat().st_size
    assert tail_lines(log, 0)[0] == []


def test_a_second_interrupt_stops_at_once(tmp_path: Path) -> None:
    """Ctrl-C lets in-flight requests finish; Ctrl-C again does not wait for them."""
    release = threading.Event()

    def hang(handler, seen) -> None:  # an upstream that answers only when the test says so
        release.wait(TIMEOUT)
        handler.send_response(200)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    from cordon_testing.proxy import RouteSpec

    with RecordingUpstream() as upstream:
        upstream.handlers["/slow"] = hang
        port = free_port()
        config = write_config(tmp_path, port, [RouteSpec("local", "localhost", "LOCAL_KEY")],
                              upstream_ca_file=upstream.write_ca(tmp_path / "up.pem"))
        proc = start(config, env={"LOCAL_KEY": "sk-slow"})
        try:
            wait_healthy(proc, port)
            client = subprocess.Popen(["curl", "-sS", "-x", f"http://127.0.0.1:{port}", "--cacert",
                                       str(tmp_path / "state" / "certs" / "ca-cert.pem"), "--max-time", "30",
                                       f"https://localhost:{upstream.port}/slow"], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL)
            deadline = time.monotonic() + TIMEOUT
            while not upstream.requests and time.monotonic() < deadline:
                time.sleep(0.05)
            assert upstream.requests, "the request never reached the upstream"
            proc.send_signal(signal.SIGINT)  # drain: the request is still in flight
            time.sleep(0.5)
            assert proc.poll() is None
            proc.send_signal(signal.SIGINT)
            code, out = stop(proc)
        finally:
            release.set()
            if proc.poll() is None:
                stop(proc)
            client.wait(TIMEOUT)
    assert code == 1, out
    assert "Ctrl-C again stops now" in out and "stopped without waiting for in-flight requests" in out


def test_start_does_not_quietly_replace_a_deleted_ca(tmp_path: Path) -> None:
    """The CA is gone but the bundle clients trust still holds it: refuse, and say how to make a new one."""
    from cordon_testing.proxy import RouteSpec

    port = free_port()
    config = write_config(tmp_path, port, [RouteSpec("a", "api.test", "A_KEY")])
    proc = start(config, env={"A_KEY": "x"})  # first start: creates the CA
    wait_healthy(proc, port)
    assert stop(proc)[0] == 0
    paths = resolve_scope(None, config, env=os.environ, cwd=tmp_path)
    paths.combined_bundle.parent.mkdir(parents=True, exist_ok=True)
    paths.combined_bundle.write_bytes((tmp_path / "state" / "certs" / "ca-cert.pem").read_bytes())
    (tmp_path / "state" / "certs" / "ca-key.pem").unlink()
    (tmp_path / "state" / "certs" / "ca-cert.pem").unlink()
    code, out = finish(start(config, env={"A_KEY": "x"}))
    assert code == 1 and "the CA of this scope is gone" in out and "cordon ca generate --force" in out
    assert not (tmp_path / "state" / "certs" / "ca-cert.pem").exists()


def test_a_failed_secret_check_hints_per_source_not_cordon_secret_set(tmp_path: Path) -> None:
    from cordon_testing.proxy import RouteSpec

    config = write_config(tmp_path, free_port(), [RouteSpec("a", "api.test", "CORDON_UNSET_VAR_X")])
    code, out = finish(start(config))
    assert code == 1 and "environment variable CORDON_UNSET_VAR_X is not set" in out
    assert "cordon secret set" not in out  # a keyring command is no fix for an env source
    assert "hint: fix each as its line says, then check with: cordon secret check" in out


def test_status_says_one_route(tmp_path: Path) -> None:
    from cordon_testing.proxy import RouteSpec

    port = free_port()
    config = write_config(tmp_path, port, [RouteSpec("a", "api.test", "A_KEY")])
    proc = start(config, env={"A_KEY": "x"})
    try:
        wait_healthy(proc, port)
        status = subprocess.run([str(TOOL), "status", "-c", str(config)], capture_output=True, text=True,
                                timeout=TIMEOUT)
    finally:
        stop(proc)
    assert "1 route)" in status.stdout and "1 routes" not in status.stdout


def test_no_config_is_the_same_message_for_start_status_and_wait(tmp_path: Path) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    for argv in (["start"], ["status"], ["wait", "--timeout", "0"]):
        done = subprocess.run([str(TOOL), *argv], cwd=bare, capture_output=True, text=True, timeout=TIMEOUT)
        assert done.returncode == 1, argv
        assert done.stderr.splitlines() == [
            f"cordon: no cordon.toml in {bare} or a parent directory",
            "hint: run `cordon setup` in the project directory (or pass --config PATH, or --scope user)"], argv


def test_start_with_a_corrupt_ca_key_hints_the_command_for_this_config(tmp_path: Path) -> None:
    """`cordon start --config X` with a damaged CA key: the hint's `cordon ca generate --force` names the same
    config, or it would replace the CA of another scope (or fail to find one)."""
    import shlex

    from cordon_testing.proxy import RouteSpec

    port = free_port()
    config = write_config(tmp_path, port, [RouteSpec("a", "api.test", "A_KEY")])
    proc = start(config, env={"A_KEY": "x"})  # first start: creates the CA
    wait_healthy(proc, port)
    assert stop(proc)[0] == 0
    key = tmp_path / "state" / "certs" / "ca-key.pem"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    code, out = finish(start(config, env={"A_KEY": "x"}))
    assert code == 1 and f"{key} is not an unencrypted PEM private key" in out, out
    assert f"hint: replace it with: cordon ca generate --force --config {shlex.quote(str(config))} (the old key " \
           "is destroyed)" in out, out
