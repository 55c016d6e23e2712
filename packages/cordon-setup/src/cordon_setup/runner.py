"""``cordon run -- CMD``: run a command with the env contract, starting a proxy for its lifetime if needed.

Before the command gets the token (in the proxy URL), the listener on the scope's port must prove it is this
scope's cordon (:func:`cordon_config.identity.probe`); another scope's proxy or anything else there is named
and the command does not run. The command's environment holds no secret cordon knows of
(:mod:`cordon_setup.childenv`). The proxy is started as a subprocess (``python -m cordon_proxy start -c
<config>``), never imported, with the caller's environment (it reads the env-source secrets).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from cordon_config.identity import IdentityError, ProbeResult, probe
from cordon_config.proxyproc import STOP_TIMEOUT, ProxyExited, ProxyNotOurs, ProxyTimeout
from cordon_config.proxyproc import ProxyProcess as Process
from cordon_config.proxyproc import proxy_argv as base_argv
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
                    state.hint(paths.config_path, paths.flag))


def proxy_argv(config_path: Path, log_path: Path | None = None) -> list[str]:
    """:func:`cordon_config.proxyproc.proxy_argv` with ``--log-file`` when ``log_path`` is given."""
    return base_argv(config_path, *(("--log-file", str(log_path)) if log_path is not None else ()))


class ProxyProcess:
    """A proxy subprocess for one config (:class:`cordon_config.proxyproc.ProxyProcess`), logging to
    ``log_path``; stopped with SIGTERM (it drains)."""

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
        self.config_path = paths.config_path
        self.port = port
        self.log_path = log_path
        self.process = Process(argv if argv is not None else proxy_argv(paths.config_path, log_path),
                               env=environ, log_path=log_path, append=True, new_session=True)

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return self.process.proc

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start it and wait (bounded) until it proves it is this scope's cordon; RunError with the cause from
        its log otherwise (or naming what took the port meanwhile)."""
        self.process.start()
        try:
            self.process.wait_ours(self.paths, self.port, timeout)
            return
        except ProxyNotOurs as exc:
            self.stop()
            raise _refuse(exc.state, self.paths) from None
        except IdentityError as exc:
            self.stop()
            raise RunError(exc.message, exc.hint) from None
        except (ProxyExited, ProxyTimeout):
            self.stop()
        cause, hint = self._cause()
        raise RunError(
            f"the proxy for {self.config_path} did not become healthy on 127.0.0.1:{self.port}"
            + (f": {cause}" if cause else ""),
            hint or f"see {self.log_path} (cordon logs), or run it in the foreground: "
            f"cordon start --config {shlex.quote(str(self.config_path))}",
        )

    def _cause(self) -> tuple[str | None, str | None]:
        """What this start wrote to the log: its first ``cordon: …`` error (the cause, not the last line) and
        its ``hint:`` line."""
        lines = self.process.log_text()[: 1 << 20].splitlines()
        causes = [line.removeprefix("cordon: ") for line in lines if line.startswith("cordon: ")]
        hints = [line.removeprefix("hint: ") for line in lines if line.startswith("hint: ")]
        if not causes:
            errors = [line for line in lines if " ERROR " in line or " WARN " in line]
            causes = errors[-1:] or lines[-1:]
        cause = causes[0] if causes else None
        if cause is not None and len(causes) > 1:
            cause += f" (and {len(causes) - 1} more in {self.log_path})"
        return cause, (hints[0] if hints else None)

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM, wait (bounded: the proxy drains up to 10 s), then SIGKILL."""
        self.process.stop(timeout)


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


def merged_node_options(base: Mapping[str, str], contract: Mapping[str, str]) -> str | None:
    """The contract's ``NODE_OPTIONS`` followed by one already in ``base`` (Node reads every option in it)."""
    theirs, ours = base.get("NODE_OPTIONS", "").strip(), contract.get("NODE_OPTIONS", "")
    if theirs and ours and ours not in theirs:
        return f"{ours} {theirs}"
    return ours or None


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
    notify: Callable[[str], object] | None = None,
) -> int:
    """Run ``argv`` with the env contract on top of ``environ`` minus its secrets; start a proxy for its
    lifetime if none is up. ``notify`` gets one line per variable removed or replaced (never a value), before
    the command starts."""
    from cordon_setup.childenv import child_environment, secret_references

    base = dict(os.environ if environ is None else environ)
    child = child_environment(base, env_contract, secret_references(paths.config_path))
    if notify is not None:
        for line in child.notices:
            notify(line)
    proxy = None
    state = proxy_state(paths, port)
    if state.kind == "none":
        proxy = ProxyProcess(paths, port, log_path, environ=base, argv=start_argv)
        proxy.start(timeout=start_timeout)
    elif not state.ours:
        raise _refuse(state, paths)
    try:
        env = dict(child.env)
        node_options = merged_node_options(base, env_contract)
        if node_options:
            env["NODE_OPTIONS"] = node_options
        return run_command(argv, env)
    finally:
        if proxy is not None:
            proxy.stop()
