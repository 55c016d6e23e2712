"""A stale proxy is noticed and refreshed: `cordon reload` (and SIGHUP), `cordon stop`, `cordon restart`.

A real project with its real proxy (``cordon start``) and a recording upstream. The route is edited while the
proxy runs and a slow request is in flight: ``status`` and ``doctor`` say the proxy runs an older config,
``cordon reload`` swaps it for new requests while the one in flight finishes as it started; an invalid
config (or a ``tokens.toml`` others can read) is refused and the running config stays.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest
from cordon_testing.proxy import TIMEOUT, RecordingUpstream, free_port, status

pytestmark = pytest.mark.e2e


@pytest.fixture
def upstream() -> Iterator[RecordingUpstream]:
    with RecordingUpstream() as up:
        up.handlers["/slow"] = lambda h, seen: (time.sleep(1.5), status(200, b"slow done")(h, seen))
        yield up


def _curl(project, port: int, upstream: RecordingUpstream, path: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in project.env.items() if "proxy" not in k.lower()}
    return subprocess.run(
        ["curl", "-sS", "--max-time", str(int(TIMEOUT)), "-x", project.proxy_url(port), "--cacert",
         str(project.paths.ca_cert), "-H", "Authorization: Bearer dummy", f"https://api.test:{upstream.port}{path}"],
        capture_output=True, text=True, env=env, timeout=TIMEOUT + 5,
    )


def _seen(upstream: RecordingUpstream, path: str):  # type: ignore[no-untyped-def]
    (request,) = [r for r in upstream.requests if r.path == path]
    return request


def test_reload_swaps_the_config_for_new_requests_and_keeps_it_on_a_bad_one(projects, upstream, tmp_path) -> None:
    port = free_port()
    a = projects("a").setup(port, upstream.write_ca(tmp_path / "up-ca.pem")).start()
    pid = a.proc.pid
    in_flight: dict[str, subprocess.CompletedProcess[str]] = {}
    thread = threading.Thread(target=lambda: in_flight.update(r=_curl(a, port, upstream, "/slow")))
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not any(r.path == "/slow" for r in upstream.requests):
        assert time.monotonic() < deadline, "the slow request never reached the upstream"
        time.sleep(0.02)
    a.must("route", "edit", "api", "--header-name", "X-Api-Key", "--scheme", "Key")
    stale = a.cordon("status")
    assert "the running proxy uses an older version of this config" in stale.stdout and "hint: cordon reload" in stale.stdout
    assert "cordon reload" in a.cordon("doctor").stdout
    reloaded = a.must("reload")
    assert reloaded.stdout.startswith(f"reloaded cordon (pid {pid}): 1 route, config sha256:")
    thread.join(TIMEOUT)
    assert in_flight["r"].stdout == "slow done"  # finished as it started
    assert _seen(upstream, "/slow").header("Authorization") == [f"Bearer {a.secret}"]
    assert _curl(a, port, upstream, "/after-reload").returncode == 0
    after = _seen(upstream, "/after-reload")
    assert after.header("X-Api-Key") == [f"Key {a.secret}"] and after.header("Authorization") == []
    assert json.loads(a.must("status", "--json").stdout)["config_current"] is True

    # an invalid config is refused: exit 1 with the reason, a log line, and the running config stays
    good = a.config.read_text()
    a.config.write_text(good + "\n[limits]\nidle_timeout = -1\n")
    refused = a.cordon("reload")
    assert refused.returncode == 1
    assert refused.stderr.startswith("cordon: reload refused, still running the previous config: ")
    assert "idle_timeout" in refused.stderr
    assert _curl(a, port, upstream, "/after-refused").returncode == 0
    assert _seen(upstream, "/after-refused").header("X-Api-Key") == [f"Key {a.secret}"]
    assert "reload refused" in a.logs()

    # SIGHUP is the same reload
    a.config.write_text(good.replace('header_name = "X-Api-Key"', 'header_name = "X-Other-Key"'))
    unapproved = a.cordon("reload")  # an edit by hand must be approved first
    assert unapproved.returncode == 1 and 'route "api" changed since it was approved' in unapproved.stderr
    a.approve()
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + TIMEOUT
    while not json.loads(a.cordon("status", "--json").stdout)["config_current"]:
        assert time.monotonic() < deadline, a.logs()
        time.sleep(0.05)
    assert _curl(a, port, upstream, "/after-sighup").returncode == 0
    assert _seen(upstream, "/after-sighup").header("X-Other-Key") == [f"Key {a.secret}"]

    # a tokens.toml others can read is refused at reload, with the command that fixes it
    a.paths.tokens_path.chmod(0o644)
    refused = a.cordon("reload")
    assert refused.returncode == 1 and f"chmod 600 {a.paths.tokens_path}" in refused.stderr
    a.paths.tokens_path.chmod(0o600)
    assert a.proc.poll() is None and a.proc.pid == pid


def test_reload_and_stop_act_on_their_own_scope_only(projects, upstream, tmp_path) -> None:
    """Two real projects, each with its proxy: A's reload and stop leave B alone; B's reload reloads B."""
    ca = upstream.write_ca(tmp_path / "up-ca.pem")
    port_a, port_b = free_port(), free_port()
    a = projects("a").setup(port_a, ca).start()
    b = projects("b").setup(port_b, ca).start()
    pid_b = b.proc.pid
    a.must("route", "edit", "api", "--header-name", "X-A-Key", "--scheme", "A")
    b.must("route", "edit", "api", "--header-name", "X-B-Key", "--scheme", "B")
    assert a.must("reload").stdout.startswith(f"reloaded cordon (pid {a.proc.pid}): ")
    assert "older version of this config" in b.cordon("status").stdout  # B not reloaded by A's command
    assert _curl(b, port_b, upstream, "/b-before").returncode == 0
    assert _seen(upstream, "/b-before").header("Authorization") == [f"Bearer {b.secret}"]
    assert b.must("reload").stdout.startswith(f"reloaded cordon (pid {pid_b}): ")
    assert _curl(a, port_a, upstream, "/a-after").returncode == 0 and _curl(b, port_b, upstream, "/b-after").returncode == 0
    assert _seen(upstream, "/a-after").header("X-A-Key") == [f"A {a.secret}"]
    assert _seen(upstream, "/b-after").header("X-B-Key") == [f"B {b.secret}"]
    assert a.must("stop").stdout == f"stopped cordon (pid {a.proc.pid}) on 127.0.0.1:{port_a}\n"
    assert json.loads(b.must("status", "--json").stdout)["pid"] == pid_b and b.proc.poll() is None


def test_stop_and_restart(projects, upstream, tmp_path) -> None:
    port = free_port()
    a = projects("a").setup(port, upstream.write_ca(tmp_path / "up-ca.pem"))
    nothing = a.cordon("stop")
    assert nothing.returncode == 0 and nothing.stdout == f"cordon is not running on 127.0.0.1:{port}: nothing to stop\n"
    a.start()
    pid = a.proc.pid
    stopped = a.must("stop")
    assert stopped.stdout == f"stopped cordon (pid {pid}) on 127.0.0.1:{port}\n"
    assert a.proc.wait(TIMEOUT) == 0
    a.proc = None
    a.start()
    try:
        restarted = a.must("restart", env={**a.env, a.SECRET_VAR: a.secret})  # the new proxy gets this environment
        new_pid = json.loads(a.must("status", "--json").stdout)["pid"]
        assert new_pid != a.proc.pid and restarted.stdout.startswith(
            f"cordon is running on 127.0.0.1:{port} (pid {new_pid}); log: ")
        assert a.proc.wait(TIMEOUT) == 0  # the old one drained and exited
        a.proc = None
    finally:
        a.cordon("stop")
    assert a.cordon("status").returncode == 1
