"""``cordon run -- CMD``: run a command with the env contract, starting a proxy for its lifetime if needed.

Before the command gets the token (in the proxy URL), the listener on the scope's port must prove it is this
scope's cordon (:func:`cordon_config.identity.probe`); another scope's proxy or anything else there is named
and the command does not run. The command's environment holds no secret cordon knows of
(:mod:`cordon_setup.childenv`). The proxy is started as a subprocess (``python -m cordon_proxy start -c
<config>``), never imported, with the caller's environment (it reads the env-source secrets).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cordon_config.identity import IdentityError, ProbeResult, probe
from cordon_config.scope import ScopePaths

HEALTH_TIMEOUT = 1.0
START_TIMEOUT = 20.0


class RunError(RuntimeError):
    """The proxy could not be started, or the command could not be run (one line + hint)."""

    def __init__(self, message: str, hint: str | None = None, code: int = 1) -> None:
        super().__init__(message)
        self.hint = hint
        self.code = code


def proxy_state(paths: ScopePaths, port: int, *, timeout: float = HEALTH_TIMEOUT) -> ProbeResult:
    """What listens on the scope's port (see :func:`cordon_config.identity.probe`); RunError for a broken key."""
    try:
        return probe(paths, port, timeout)
    except IdentityError as exc:
        raise RunError(exc.message, exc.hint) from None


def _refuse(state: ProbeResult, paths: ScopePaths) -> RunError:
    return RunError(f"{state.message()}; the command was not run (it would have sent this scope's token there)",
                    state.hint(paths.config_path))


def proxy_argv(config_path: Path) -> list[str]:
    """``python -m cordon_proxy start -c <config>`` with this interpreter (the proxy is never imported)."""
    return [sys.executable, "-m", "cordon_proxy", "start", "-c", str(config_path)]


class ProxyProcess:
    """A proxy subprocess for one config, logging to ``log_path``; stopped with SIGTERM (it drains)."""

    def __init__(
        self,
        paths: ScopePaths,
        port: int,
        log_path: Path,
        *,
        environ: Mapping[str, str],
        argv: Sequence[str] | None = None,
    ) -> None:
        self.paths = paths
        config_path = self.config_path = paths.config_path
        self.port = port
        self.log_path = log_path
        self.environ = dict(environ)
        self.argv = list(argv) if argv is not None else proxy_argv(config_path)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start it and wait (bounded) until it proves it is this scope's cordon; RunError with the log's tail
        otherwise (or naming what took the port meanwhile)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=self.environ,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            state = proxy_state(self.paths, self.port, timeout=0.5)
            if state.ours and state.pid in (None, self.proc.pid):
                return
            if state.kind != "none" and not state.ours:
                self.stop()
                raise _refuse(state, self.paths)
            time.sleep(0.05)
        self.stop()
        raise RunError(
            f"the proxy for {self.config_path} did not become healthy on 127.0.0.1:{self.port}{self._tail()}",
            f"see {self.log_path}, or run it in the foreground: cordon start --config {self.config_path}",
        )

    def _tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f" (last log line: {lines[-1]})" if lines else ""

    def stop(self, *, timeout: float = 12.0) -> None:
        """SIGTERM, wait (bounded: the proxy drains up to 10 s), then SIGKILL."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_command(argv: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``argv`` with ``env``; its exit code (128+N when killed by signal N, 127 when not found)."""
    try:
        proc = subprocess.Popen(list(argv), env=dict(env))
    except FileNotFoundError:
        raise RunError(f"command not found: {argv[0]}", code=127) from None
    except PermissionError:
        raise RunError(f"cannot execute {argv[0]}: permission denied", code=126) from None
    while True:
        try:
            code = proc.wait()
            break
        except KeyboardInterrupt:
            continue  # the child got the same SIGINT from the terminal; wait for it to finish
    return 128 - code if code < 0 else code


def run_with_proxy(
    argv: Sequence[str],
    *,
    env_contract: Mapping[str, str],
    paths: ScopePaths,
    port: int,
    log_path: Path,
    environ: Mapping[str, str] | None = None,
    start_timeout: float = START_TIMEOUT,
    start_argv: Sequence[str] | None = None,
    notify: Callable[[str], None] | None = None,
) -> int:
    """Run ``argv`` with the env contract on top of ``environ`` minus its secrets; start a proxy for its
    lifetime if none is up. ``notify`` gets one line per variable removed or replaced (never a value), before
    the command starts."""
    from cordon_setup.childenv import child_environment, secret_references

    base = dict(os.environ if environ is None else environ)
    child = child_environment(base, env_contract, secret_references(paths.config_path))
    for line in child.notices if notify is not None else ():
        notify(line)
    proxy = None
    state = proxy_state(paths, port)
    if state.kind == "none":
        proxy = ProxyProcess(paths, port, log_path, environ=base, argv=start_argv)
        proxy.start(timeout=start_timeout)
    elif not state.ours:
        raise _refuse(state, paths)
    try:
        return run_command(argv, child.env)
    finally:
        if proxy is not None:
            proxy.stop()
