"""Running the real proxy as a subprocess (``python -m cordon_proxy start --config PATH``) and talking to it.

cordon-doctor never imports cordon_proxy: it starts it like a user would and reads ``GET /health``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

HEALTH_TIMEOUT = 20.0
STOP_TIMEOUT = 12.0


class ProxyStartError(RuntimeError):
    """The proxy subprocess exited or never answered /health; ``log_tail`` holds its last stderr lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def get_health(port: int, timeout: float = 2.0) -> dict[str, Any] | None:
    """The JSON of ``GET http://127.0.0.1:<port>/health`` when it is a healthy cordon, else None."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health", headers={"User-Agent": "cordon-doctor"})
        resp = conn.getresponse()
        body = resp.read(65536)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    if resp.status != 200:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None
    if not isinstance(doc, dict) or doc.get("status") != "ok":
        return None
    return doc


def proxy_command(config_path: Path) -> list[str]:
    """The exact command line that runs the proxy in the foreground for ``config_path``."""
    return [sys.executable, "-m", "cordon_proxy", "start", "--config", str(config_path)]


def tail(path: Path, lines: int = 12) -> str:
    """The last ``lines`` lines of a log file ('' when absent)."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ProxyProcess:
    """A proxy subprocess with its stderr+stdout sent to ``log_path``; stop it with :meth:`stop`."""

    def __init__(self, config_path: Path, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.config_path = config_path
        self.port = port
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.proc = subprocess.Popen(
                proxy_command(config_path),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=dict(env),
                cwd=str(config_path.parent),
            )
        except BaseException:
            self._log.close()
            raise

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> dict[str, Any]:
        """Poll /health until it answers (bounded); raise ProxyStartError if the process exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ProxyStartError(f"the proxy exited with code {code} before answering /health", self.log_tail())
            health = get_health(self.port, timeout=1.0)
            if health is not None:
                return health
            if time.monotonic() > deadline:
                raise ProxyStartError(
                    f"the proxy did not answer http://127.0.0.1:{self.port}/health within {timeout:.0f} s",
                    self.log_tail(),
                )
            time.sleep(0.05)

    def log_tail(self, lines: int = 12) -> str:
        """The last lines the proxy wrote."""
        self._log.flush()
        return tail(self.log_path, lines)

    def stop(self) -> int | None:
        """SIGTERM (drain), then SIGKILL after a bound; returns the exit code. Idempotent."""
        try:
            if self.proc.poll() is None:
                try:
                    self.proc.send_signal(signal.SIGTERM)
                    self.proc.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=5)
            return self.proc.returncode
        finally:
            if not self._log.closed:
                self._log.close()


def proxy_environment(base: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The proxy subprocess's environment: ``base`` without proxy/TLS overrides, plus ``extra``."""
    dropped = {
        "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "CORDON_TEST_RESOLVE", "SSLKEYLOGFILE",
    }
    env = {k: v for k, v in base.items() if k not in dropped}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def current_environ() -> dict[str, str]:
    """A copy of this process's environment."""
    return dict(os.environ)
