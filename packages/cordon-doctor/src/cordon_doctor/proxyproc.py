"""Running the real proxy as a subprocess (``python -m cordon_proxy start --config PATH``) and talking to it.

cordon-doctor never imports cordon_proxy: it starts it like a user would and asks ``GET /health`` for the
proof that the listener is that scope's cordon (:func:`cordon_config.identity.probe`).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from cordon_config.scope import ScopePaths

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

    def __init__(self, paths: ScopePaths, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.paths = paths
        config_path = self.config_path = paths.config_path
        self.env = dict(env)
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
        """Poll until this scope's proxy proves itself (bounded); its /health details. ProxyStartError if the
        process exits, something else answers, or time runs out."""
        from cordon_config.identity import probe

        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ProxyStartError(f"the proxy exited with code {code} before answering /health", self.log_tail())
            state = probe(self.paths, self.port, timeout=1.0, env=self.env)
            if state.ours:
                return dict(state.health)
            if state.kind != "none":
                raise ProxyStartError(state.message(), self.log_tail())
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
        "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE",
    }
    env = {k: v for k, v in base.items() if k not in dropped}
    env.update(extra)
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def current_environ() -> dict[str, str]:
    """A copy of this process's environment."""
    return dict(os.environ)
