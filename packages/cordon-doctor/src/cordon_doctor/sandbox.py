"""A throwaway cordon: temporary scope, CA, a local TLS echo upstream, one route with a throwaway secret, and the
real proxy as a subprocess. Shared by ``cordon demo`` and ``cordon doctor --runtimes``. Needs no network.

Everything lives in one temporary directory (``XDG_CONFIG_HOME`` for the proxy points inside it) and
:meth:`Sandbox.close` removes it and stops every process, whatever happened before.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon_config.files import atomic_write
from cordon_config.ports import free_port
from cordon_config.scope import ScopePaths, resolve_scope

from cordon_doctor.echo import EchoServer
from cordon_doctor.proxyproc import (
    ProxyProcess,
    ProxyStartError,
    current_environ,
    proxy_environment,
)

ROUTE_NAME = "demo"
ROUTE_HOST = "localhost"
SECRET_VAR = "CORDON_DEMO_SECRET"
PORT_ATTEMPTS = 3


class StepFailed(RuntimeError):
    """A sandbox step failed; ``step`` names it, ``hint`` says what to look at, ``log_tail`` is proxy output."""

    def __init__(self, step: str, message: str, *, hint: str | None = None, log_tail: str = "") -> None:
        super().__init__(message)
        self.step = step
        self.hint = hint
        self.log_tail = log_tail


@dataclass
class StepResult:
    """One completed step: its name, a human line, and how long it took."""

    step: str
    title: str
    detail: str
    seconds: float


StepCallback = Callable[[StepResult], None]


def toml_string(value: str) -> str:
    """A TOML basic string (JSON string escaping is valid TOML for these values)."""
    return json.dumps(value, ensure_ascii=False)


def demo_secret() -> str:
    """A random throwaway secret in the shape of an API key: ``sk-demo-`` + 28 url-safe characters."""
    return "sk-demo-" + secrets.token_urlsafe(21)


def render_config(port: int, paths: ScopePaths, upstream_ca: Path) -> str:
    """The sandbox's cordon.toml: one header route for ``localhost`` whose secret comes from an env var."""
    return f"""\
# Written by `cordon demo` in a temporary directory; removed when the demo ends.
listen = {port}

[tls]
enabled = true
ca_cert_path = {toml_string(str(paths.ca_cert))}
ca_key_path = {toml_string(str(paths.ca_key))}
upstream_ca_file = {toml_string(str(upstream_ca))}

[[routes]]
name = "{ROUTE_NAME}"
[routes.match]
host = "{ROUTE_HOST}"
[routes.auth]
type = "header"
header_name = "Authorization"
scheme = "Bearer"
[routes.auth.secret]
source = "env"
var = "{SECRET_VAR}"
"""


class Sandbox:
    """Build with :meth:`open` (a context manager); attributes are valid once it has started."""

    def __init__(self, on_step: StepCallback | None = None, *, keep: bool = False) -> None:
        self.on_step = on_step or (lambda result: None)
        self.keep = keep
        self.root: Path | None = None
        self.paths: ScopePaths | None = None
        self.echo: EchoServer | None = None
        self.proxy: ProxyProcess | None = None
        self.secret: str = demo_secret()
        self.token: str | None = None
        self.port: int = 0
        self.upstream_ca: Path | None = None
        self.xdg: Path | None = None

    # -- steps ------------------------------------------------------------------------------------------
    def _step(self, step: str, title: str, action: Callable[[], str]) -> None:
        start = time.perf_counter()
        try:
            detail = action()
        except StepFailed:
            raise
        except Exception as exc:  # one clear line naming the step, never a traceback
            raise StepFailed(step, f"{type(exc).__name__}: {exc}") from exc
        self.on_step(StepResult(step, title, detail, time.perf_counter() - start))

    def start(self) -> None:
        """Run every setup step in order, reporting each through ``on_step``."""
        self._step("scope", "temporary scope", self._make_scope)
        self._step("ca", "cordon CA", self._make_ca)
        self._step("upstream", "local upstream", self._make_upstream)
        self._step("config", "route + secret", self._make_config)
        self._step("proxy", "proxy", self._start_proxy)

    def _make_scope(self) -> str:
        self.root = Path(tempfile.mkdtemp(prefix="cordon-demo-"))
        os.chmod(self.root, 0o700)
        project = self.root / "project"
        project.mkdir()
        self.xdg = self.root / "xdg"
        self.xdg.mkdir(mode=0o700)
        self.paths = resolve_scope(
            None, project / "cordon.toml", env={"XDG_CONFIG_HOME": str(self.xdg)}, cwd=project
        )
        return str(self.root)

    def _make_ca(self) -> str:
        from cordon_ca import load_or_create_ca

        assert self.paths is not None
        ca = load_or_create_ca(self.paths.ca_cert, self.paths.ca_key, namespace=self.paths.namespace)
        return f"created {ca.common_name!r} ({ca.key_type}), key 0600"

    def _make_upstream(self) -> str:
        from cordon_ca.upstream_ca import create_upstream_ca

        assert self.root is not None
        up = self.root / "upstream"
        up.mkdir(mode=0o700)
        # its own CA, not a cordon one: the proxy never trusts a cordon CA upstream
        up_ca = create_upstream_ca(up / "upstream-ca.pem", up / "upstream-ca-key.pem", name="cordon demo upstream")
        cert_pem, key_pem = up_ca.issue_leaf(ROUTE_HOST)
        cert_file, key_file = up / "localhost.pem", up / "localhost-key.pem"
        atomic_write(cert_file, cert_pem, mode=0o644)
        atomic_write(key_file, key_pem, mode=0o600)
        self.upstream_ca = up / "upstream-ca.pem"
        self.echo = EchoServer(cert_file, key_file).start()
        return f"TLS echo server at https://{ROUTE_HOST}:{self.echo.port} (own CA; the proxy verifies it)"

    def _make_config(self) -> str:
        assert self.paths is not None and self.upstream_ca is not None
        self.port = free_port()
        self._write_config()
        self._check_config()
        self.token = self._make_token()
        return (
            f'route "{ROUTE_NAME}" for {ROUTE_HOST}: Authorization: Bearer <${SECRET_VAR}>, a random '
            f"sk-demo-… value only the proxy's environment holds; proxy token on"
        )

    def _write_config(self) -> None:
        assert self.paths is not None and self.upstream_ca is not None
        atomic_write(self.paths.config_path, render_config(self.port, self.paths, self.upstream_ca))

    def _check_config(self) -> None:
        """Validate with cordon-config's own loader, so a mismatch shows here rather than as a dead proxy, and
        approve it: cordon wrote this config itself, in a scope of its own (docs/security.md)."""
        from cordon_config import load_config
        from cordon_config.approvals import approve

        assert self.paths is not None
        approve(self.paths, load_config(self.paths.config_path))

    def _make_token(self) -> str:
        from cordon_setup.base import ensure_token

        assert self.paths is not None
        return ensure_token(self.paths, "demo")

    def _start_proxy(self) -> str:
        assert self.paths is not None and self.root is not None and self.xdg is not None
        env = proxy_environment(current_environ(), {SECRET_VAR: self.secret, "XDG_CONFIG_HOME": str(self.xdg)})
        last: ProxyStartError | None = None
        for attempt in range(PORT_ATTEMPTS):
            if attempt:  # the port was taken between picking it and binding it: pick another
                self.port = free_port()
                self._write_config()
            self.proxy = ProxyProcess(self.paths, self.port, env, self.root / "proxy.log")
            try:
                health = self.proxy.wait_healthy()
            except ProxyStartError as exc:
                last = exc
                self.proxy.stop()
                if "in use" not in exc.log_tail and "already" not in exc.log_tail:
                    break
                continue
            routes = health.get("routes")
            return f"cordon {health.get('version', '?')} on 127.0.0.1:{self.port}: /health ok, {routes} route"
        assert last is not None
        raise StepFailed(
            "proxy",
            str(last),
            hint="run it yourself to see why: cordon start --config <the demo's cordon.toml> (use --keep)",
            log_tail=last.log_tail,
        )

    # -- teardown ---------------------------------------------------------------------------------------
    def close(self) -> list[str]:
        """Stop the proxy and the echo server and remove the directory (unless ``keep``); never raises.

        Ctrl-C and SIGTERM are held off while it runs, so a second Ctrl-C cannot leave a proxy behind.
        """
        with _signals_held():
            return self._close()

    def _close(self) -> list[str]:
        done: list[str] = []
        if self.proxy is not None:
            try:
                self.proxy.stop()
                done.append("proxy stopped")
            except Exception as exc:  # pragma: no cover - best effort
                done.append(f"proxy stop failed: {exc}")
            self.proxy = None
        if self.echo is not None:
            self.echo.close()
            self.echo = None
            done.append("upstream stopped")
        if self.root is not None:
            if self.keep:
                done.append(f"kept {self.root}")
            else:
                shutil.rmtree(self.root, ignore_errors=True)
                done.append("temporary files removed")
        return done


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM inside the block (main thread only); restore the previous handlers after."""
    saved: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
    except ValueError:  # not the main thread: nothing to hold
        pass
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@contextmanager
def open_sandbox(on_step: StepCallback | None = None, *, keep: bool = False) -> Iterator[Sandbox]:
    """Start a sandbox and always close it."""
    box = Sandbox(on_step, keep=keep)
    try:
        box.start()
        yield box
    finally:
        box.close()
