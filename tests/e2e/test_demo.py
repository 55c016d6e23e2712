"""`cordon demo` end to end: the real umbrella command, the real proxy subprocess, a local TLS upstream."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cordon_testing.doctor import write_fake_proxy
from cordon_testing.proxy import default_signals

pytestmark = pytest.mark.e2e

FULL_SECRET = re.compile(r"sk-demo-[A-Za-z0-9_-]{8,}")
MASKED = re.compile(r"Authorization: Bearer sk-d…\(36 chars\)")


def run_demo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cordon", "demo", *args],
        capture_output=True, text=True, timeout=90, env=env, stdin=subprocess.DEVNULL, check=False,
    )


def with_fake_proxy(tmp_path: Path, mode: str) -> dict[str, str]:
    fake = write_fake_proxy(tmp_path / f"fake-{mode}", mode)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(fake), *filter(None, [env.get("PYTHONPATH")])])
    return env


def demo_dir(stdout: str) -> Path:
    match = re.search(r"(/\S*cordon-demo-\w+)", stdout)
    assert match, stdout
    return Path(match.group(1))


def test_demo_injects_and_never_prints_the_secret() -> None:
    result = run_demo()
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    assert MASKED.search(out), out
    assert "Authorization: Bearer dummy-replaced-by-cordon" in out
    assert "the real secret never reached the client" in out
    assert not FULL_SECRET.search(out), out
    assert not demo_dir(result.stdout).exists()


def test_demo_json() -> None:
    result = run_demo("--json")
    assert result.returncode == 0, result.stdout + result.stderr
    doc = json.loads(result.stdout)
    assert doc["schema"] == "cordon.demo/1" and doc["ok"] is True and doc["failed_step"] is None
    assert [s["step"] for s in doc["steps"]] == ["scope", "ca", "upstream", "config", "proxy", "request", "verify"]
    auth = [v for k, v in doc["upstream_received"]["headers"] if k.lower() == "authorization"]
    assert auth == ["Bearer sk-d…(36 chars)"]
    assert doc["client_sent"]["Authorization"] == "Bearer dummy-replaced-by-cordon"
    assert not FULL_SECRET.search(result.stdout)


def test_demo_keep_leaves_the_directory(tmp_path: Path) -> None:
    result = run_demo("--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    kept = demo_dir(result.stdout)
    try:
        assert (kept / "project" / "cordon.toml").is_file()
        assert f"kept {kept}" in result.stdout
        for path in kept.rglob("*"):
            if path.is_file():
                assert not FULL_SECRET.search(path.read_text(errors="replace")), path
    finally:
        import shutil

        shutil.rmtree(kept, ignore_errors=True)


@pytest.mark.parametrize(("mode", "step"), [("crash", "proxy"), ("refuse", "request")])
def test_demo_failure_names_the_step(tmp_path: Path, mode: str, step: str) -> None:
    result = run_demo(env=with_fake_proxy(tmp_path, mode))
    assert result.returncode == 1
    assert f"cordon: demo failed at step '{step}'" in result.stderr
    assert f"FAILED at step '{step}'" in result.stdout
    assert not demo_dir(result.stdout).exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_demo_cleans_up_on_signal(tmp_path: Path, signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cordon", "demo"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=with_fake_proxy(tmp_path, "stall"), stdin=subprocess.DEVNULL, preexec_fn=default_signals,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("[5/7]"):
            break
    text = "".join(lines)
    assert "[5/7]" in text, text
    port = int(re.search(r"127\.0\.0\.1:(\d+)", text.splitlines()[-1]).group(1))  # type: ignore[union-attr]
    time.sleep(0.3)  # the demo is now blocked in the CONNECT the fake proxy never answers
    proc.send_signal(signum)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    assert not demo_dir(text).exists()
    with socket.socket() as sock:
        sock.settimeout(2)
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the proxy is still listening"
