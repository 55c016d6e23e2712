"""The one client of a ``cordon start`` subprocess: its command line, starting it with its output in a log file,
waiting until it proves it is the scope's cordon, and stopping it (SIGTERM, which drains, then SIGKILL).

``cordon run`` (cordon-setup), ``cordon demo`` (cordon-doctor), the test harness (cordon-testing) and the
benchmark start the proxy through this module; none of them imports cordon_proxy (it runs as
``python -m cordon_proxy``). The port is chosen with :func:`cordon_config.ports.free_port`, and whether the
listener is this scope's cordon is :func:`cordon_config.identity.probe`'s answer. Stdlib only.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from cordon_config.identity import ProbeResult
    from cordon_config.scope import ScopePaths

__all__ = ["STOP_TIMEOUT", "ProxyExited", "ProxyNotOurs", "ProxyProcess", "ProxyTimeout", "proxy_argv", "stop_process"]

STOP_TIMEOUT = 12.0  # the proxy drains in-flight requests for up to 10 s after SIGTERM
POLL_INTERVAL = 0.05

T = TypeVar("T")


class ProxyExited(RuntimeError):
    """The proxy exited before it was ready (``code``: its exit status)."""

    def __init__(self, code: int) -> None:
        super().__init__(f"the proxy exited with code {code} before answering /health")
        self.code = code


class ProxyTimeout(RuntimeError):
    """The proxy did not become ready in time."""


class ProxyNotOurs(RuntimeError):
    """Something other than this scope's cordon answers on the port (``state``: the probe's answer)."""

    def __init__(self, state: ProbeResult) -> None:
        super().__init__(state.message())
        self.state = state


def stop_process(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> int:
    """Stop a child: SIGTERM (the proxy drains), a bounded wait, SIGKILL as a last resort; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    return proc.returncode


def proxy_argv(config_path: Path, *extra: str) -> list[str]:
    """``python -m cordon_proxy start -c <config> [extra…]`` with this interpreter."""
    return [sys.executable, "-m", "cordon_proxy", "start", "-c", str(config_path), *extra]


class ProxyProcess:
    """A ``cordon start`` subprocess (``argv``, usually :func:`proxy_argv`) whose stdout and stderr go to
    ``log_path`` (0600; ``append`` keeps what is there, else it is started afresh)."""

    def __init__(self, argv: Sequence[str], *, env: Mapping[str, str], log_path: Path, cwd: Path | None = None,
                 append: bool = False, new_session: bool = False) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = Path(log_path)
        self.cwd = cwd
        self.append = append
        self.new_session = new_session
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_offset = 0  # where this start's output begins in the log

    def start(self) -> ProxyProcess:
        """Start it (does not wait; see :meth:`wait_until` and :meth:`wait_ours`)."""
        if self.append:
            from cordon_config.files import open_log_file

            fd = open_log_file(self.log_path)
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
            fd = os.open(self.log_path, flags, 0o600)
        try:
            self.log_offset = os.fstat(fd).st_size
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=fd, env=self.env,
                cwd=None if self.cwd is None else str(self.cwd), start_new_session=self.new_session,
            )
        finally:
            os.close(fd)
        return self

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    def wait_until(self, ready: Callable[[], T | None], timeout: float) -> T:
        """Poll ``ready()`` until it returns something (that value); :class:`ProxyExited` when the process
        exits first, :class:`ProxyTimeout` after ``timeout`` seconds."""
        assert self.proc is not None, "start() first"
        deadline = time.monotonic() + timeout
        while True:
            code = self.proc.poll()
            if code is not None:
                raise ProxyExited(code)
            value = ready()
            if value is not None:
                return value
            if time.monotonic() > deadline:
                raise ProxyTimeout(f"the proxy did not answer /health within {timeout:.0f} s")
            time.sleep(POLL_INTERVAL)

    def wait_ours(self, paths: ScopePaths, port: int, timeout: float, *,
                  env: Mapping[str, str] | None = None) -> ProbeResult:
        """Wait until the listener on ``port`` proves it is ``paths``' cordon (this process, when it says its
        pid); :class:`ProxyNotOurs` as soon as an answer proves it is not (``settled``: another scope's proof, an
        HTTP answer this scope's key does not verify). A silence is waited out: it may be this proxy starting
        (it serves /health only once its listeners are bound)."""
        from cordon_config.identity import probe

        def ready() -> ProbeResult | None:
            state = probe(paths, port, timeout=0.5, env=env)
            if state.ours and state.pid in (None, self.pid):
                return state
            if state.settled:
                raise ProxyNotOurs(state)
            return None

        return self.wait_until(ready, timeout)

    def log_text(self, *, since_start: bool = True) -> str:
        """What the proxy wrote to its log (by default only since this start; '' when unreadable)."""
        try:
            with open(self.log_path, "rb") as handle:
                handle.seek(self.log_offset if since_start else 0)
                return handle.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 12) -> str:
        """The last ``lines`` lines the proxy wrote."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM (it drains), a bounded wait, then SIGKILL; its exit code (None when never started).
        Idempotent."""
        return None if self.proc is None else stop_process(self.proc, timeout)
