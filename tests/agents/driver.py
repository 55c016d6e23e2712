"""Run one real-client scenario inside a private network namespace (started by the tests in this directory).

Usage (as root): ``unshare -nm -- dbus-run-session -- python driver.py SPEC.json``. The driver refuses to do
anything unless it is in a namespace whose only interface is loopback; then it brings ``lo`` up, bind-mounts
a hosts file that sends every provider host to 127.0.0.1 (for cordon, which resolves the routed hosts), starts
a real Secret Service (gnome-keyring on the private session bus), the fake provider (TLS on 127.0.0.1:443 with
its own CA) and runs the spec's steps in order. It writes ``result.json`` beside the spec: each step's exit
code and output, and the fake's recording.

The real key comes in the environment variable ``CORDON_AGENT_REAL_KEY`` and leaves the driver only on the
standard input of the step that asks for it (``"stdin": "@real-key"``).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import fake_provider
import trustme
from cordon_testing.config import wait_for_secret_service

KEYRING_PASSWORD = b"throwaway-keyring-password"


def only_loopback() -> str | None:
    """None when loopback is the only interface (a private namespace), else what else is there."""
    names = [name for _, name in socket.if_nameindex()]
    others = [n for n in names if n != "lo"]
    return ", ".join(others) if others else None


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=30, **kwargs)


class Provider:
    """The fake provider on its own event loop thread."""

    def __init__(self, workdir: Path, real: str, dummy: str) -> None:
        ca = trustme.CA()
        leaf = ca.issue_cert(*fake_provider.HOSTS)
        self.ca_file = workdir / "upstream-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self.cert_file, self.key_file = workdir / "fake-cert.pem", workdir / "fake-key.pem"
        leaf.cert_chain_pems[0].write_to_path(str(self.cert_file))
        leaf.private_key_pem.write_to_path(str(self.key_file))
        self.fake = fake_provider.FakeProvider(fake_provider.Classifier(real, dummy))
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        if not self.ready.wait(20):
            raise RuntimeError("the fake provider did not start")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            fake_provider.serve(self.fake, str(self.cert_file), str(self.key_file))
        )
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        def _close() -> None:
            self.server.close()
            self.loop.stop()

        self.loop.call_soon_threadsafe(_close)
        self.thread.join(10)


def start_keyring(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """gnome-keyring-daemon on this session bus, its login keyring unlocked with a throwaway password."""
    proc = subprocess.Popen(
        ["gnome-keyring-daemon", "--foreground", "--unlock", "--components=secrets"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        start_new_session=True,
    )
    assert proc.stdin is not None
    proc.stdin.write(KEYRING_PASSWORD)
    proc.stdin.close()
    wait_for_secret_service()  # before any client: an early call would start a second, locked daemon
    return proc


def stop(proc: subprocess.Popen[Any], timeout: float = 15) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


def main(spec_path: str) -> int:
    spec = json.loads(Path(spec_path).read_text())
    workdir = Path(spec["workdir"])
    result: dict[str, Any] = {"steps": [], "records": [], "error": None}
    out = workdir / "result.json"
    others = only_loopback()
    if others is not None:
        result["error"] = f"refusing to run: not in a private network namespace (interfaces: {others})"
        out.write_text(json.dumps(result))
        return 3
    run(["ip", "link", "set", "lo", "up"])
    hosts = workdir / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost\n" + "".join(f"127.0.0.1 {h}\n" for h in spec["hosts"]))
    run(["mount", "--bind", str(hosts), "/etc/hosts"])
    real = os.environ.pop("CORDON_AGENT_REAL_KEY")
    base_env = {k: v for k, v in os.environ.items() if k in ("DBUS_SESSION_BUS_ADDRESS",)}
    base_env.update(spec["env"])
    keyring = start_keyring(base_env)
    provider = Provider(workdir, real, spec["dummy"])
    background: list[subprocess.Popen[Any]] = []
    try:
        for step in spec["steps"]:
            env = {**base_env, **step.get("env", {})}
            env = {k: v.replace("@upstream-ca", str(provider.ca_file)) for k, v in env.items()}
            argv = [a.replace("@upstream-ca", str(provider.ca_file)) for a in step["argv"]]
            stdin = step.get("stdin")
            if stdin == "@real-key":
                stdin = real + "\n"
            log = workdir / f"step-{len(result['steps']):02d}-{step['name']}"
            entry: dict[str, Any] = {"name": step["name"], "argv": argv, "stdout": str(log) + ".out",
                                     "stderr": str(log) + ".err"}
            result["steps"].append(entry)
            started = time.monotonic()
            with open(entry["stdout"], "wb") as so, open(entry["stderr"], "wb") as se:
                proc = subprocess.Popen(
                    argv, env=env, cwd=step.get("cwd"), stdout=so, stderr=se, start_new_session=True,
                    stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                )
                if stdin is not None:
                    assert proc.stdin is not None
                    proc.stdin.write(stdin.encode())
                    proc.stdin.close()
                if step.get("background"):
                    background.append(proc)
                    entry["returncode"] = None
                    continue
                try:
                    entry["returncode"] = proc.wait(step.get("timeout", 60))
                except subprocess.TimeoutExpired:
                    stop(proc)
                    entry["returncode"] = "timeout"
            entry["seconds"] = round(time.monotonic() - started, 2)
            if step.get("check", True) and entry["returncode"] != 0:
                result["error"] = f"step {step['name']} failed ({entry['returncode']})"
                break
    finally:
        for proc in reversed(background):
            stop(proc)
        provider.stop()
        stop(keyring)
        result["records"] = [
            {"host": r.host, "method": r.method, "path": r.path, "transport": r.transport, "keys": r.keys,
             "detail": r.detail} for r in provider.fake.records
        ]
        out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
