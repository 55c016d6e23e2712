"""Running the real proxy as a subprocess (``python -m cordon_proxy start --config PATH``) and talking to it.

cordon-doctor never imports cordon_proxy: it starts it like a user would and asks ``GET /health`` for the
proof that the listener is that scope's cordon (:func:`cordon_config.identity.probe`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cordon_config.identity import IdentityError
from cordon_config.proxyproc import ProxyExited, ProxyNotOurs, ProxyTimeout, proxy_argv
from cordon_config.proxyproc import ProxyProcess as Process
from cordon_config.scope import ScopePaths

HEALTH_TIMEOUT = 20.0


class ProxyStartError(RuntimeError):
    """The proxy subprocess exited or never answered /health; ``log_tail`` holds its last stderr lines."""

    def __init__(self, message: str, log_tail: str = "") -> None:
        super().__init__(message)
        self.log_tail = log_tail


class ProxyProcess:
    """The demo's proxy subprocess (:class:`cordon_config.proxyproc.ProxyProcess`), started at once, its output
    in ``log_path``; stop it with :meth:`stop`."""

    def __init__(self, paths: ScopePaths, port: int, env: Mapping[str, str], log_path: Path) -> None:
        self.paths = paths
        self.config_path = paths.config_path
        self.env = dict(env)
        self.port = port
        self.log_path = log_path
        self.process = Process(proxy_argv(paths.config_path), env=env, log_path=log_path,
                               cwd=paths.config_path.parent).start()

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> dict[str, Any]:
        """Wait (bounded) until this scope's proxy proves itself; its /health details. ProxyStartError if the
        process exits, something else answers, or time runs out."""
        try:
            return dict(self.process.wait_ours(self.paths, self.port, timeout, env=self.env).health)
        except ProxyTimeout:
            message = f"the proxy did not answer http://127.0.0.1:{self.port}/health within {timeout:.0f} s"
            raise ProxyStartError(message, self.log_tail()) from None
        except (ProxyExited, ProxyNotOurs) as exc:
            raise ProxyStartError(str(exc), self.log_tail()) from None
        except IdentityError as exc:  # this scope's identity key is damaged or readable by others
            raise ProxyStartError(exc.message + (f"; {exc.hint}" if exc.hint else ""), self.log_tail()) from None

    def log_tail(self, lines: int = 12) -> str:
        """The last lines the proxy wrote."""
        return self.process.log_tail(lines)

    def stop(self) -> int | None:
        """SIGTERM (drain), then SIGKILL after a bound; returns the exit code. Idempotent."""
        return self.process.stop()


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
