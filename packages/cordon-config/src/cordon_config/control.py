"""Controlling a running proxy: stop (SIGTERM) and reload (SIGHUP), only once :func:`identity.probe` says it is
this scope's cordon, and only the process the proof named (and, where the OS says, the one holding the port).

The proxy reports each reload in its authenticated ``/health`` details: ``reloads`` (attempts so far) and
``reload_error`` (None after a good one), so :func:`reload_proxy` can say how it went. Stdlib only.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from pathlib import Path

from cordon_config.identity import ProbeResult, probe
from cordon_config.scope import ScopePaths

__all__ = ["ControlError", "reload_proxy", "stop_proxy"]

POLL = 0.05


class ControlError(Exception):
    """The proxy cannot be controlled (not ours, not running, a refused reload): one line plus the fix."""

    def __init__(self, message: str, hint: str | None = None, *, state: ProbeResult | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.state = state


def _ours(paths: ScopePaths, port: int, env: Mapping[str, str] | None, *, flag: str) -> ProbeResult:
    state = probe(paths, port, env=env)
    if state.kind == "none":
        raise ControlError(state.message(), f"cordon start{flag}", state=state)
    if not state.ours:
        raise ControlError(state.message(), state.hint(paths.config_path, flag), state=state)
    if state.pid is None:
        raise ControlError(f"the cordon on port {port} did not say its process id", state=state)
    from cordon_config.portowner import port_owner

    owner = port_owner(port)
    if owner is not None and owner.pid != state.pid:
        raise ControlError(f"the cordon on port {port} says it is pid {state.pid}, but {owner} holds the port",
                           state=state)
    return state


def _signal(pid: int, sig: signal.Signals) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass  # it exited on its own meanwhile
    except PermissionError:
        raise ControlError(f"not allowed to signal the proxy (pid {pid})") from None


def stop_proxy(
    paths: ScopePaths, port: int, *, timeout: float = 15.0, env: Mapping[str, str] | None = None, flag: str = ""
) -> ProbeResult:
    """SIGTERM this scope's proxy and wait (bounded) until the port is free; the state it was in.

    Raises ControlError when nothing runs (``state.kind == "none"``), when what runs is not ours, or when it
    does not stop in time."""
    state = _ours(paths, port, env, flag=flag)
    pid = state.pid
    assert pid is not None
    _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid) or probe(paths, port, timeout=0.5, env=env).kind == "none":
            return state
        time.sleep(POLL)
    raise ControlError(f"cordon (pid {pid}) did not stop within {timeout:g} s",
                       f"kill {pid}   (it may still be finishing a long request)")


def reload_proxy(
    paths: ScopePaths, port: int, *, timeout: float = 15.0, env: Mapping[str, str] | None = None, flag: str = ""
) -> ProbeResult:
    """SIGHUP this scope's proxy and wait (bounded) for its verdict; the state after a good reload.

    Raises ControlError when it is not ours or not running, or with the proxy's own reason when it refused
    the new config (it keeps the running one)."""
    state = _ours(paths, port, env, flag=flag)
    pid = state.pid
    assert pid is not None
    before = state.health.get("reloads")
    if not isinstance(before, int):
        raise ControlError(f"the cordon on port {port} (pid {pid}) cannot reload (it is older than this cordon)",
                           f"restart it: cordon restart{flag}")
    _signal(pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = probe(paths, port, timeout=1.0, env=env)
        if not now.ours:
            raise ControlError(f"the proxy went away during the reload: {now.message()}", f"cordon start{flag}",
                               state=now)
        count = now.health.get("reloads")
        if isinstance(count, int) and count > before:
            error = now.health.get("reload_error")
            if error:
                raise ControlError(f"reload refused, still running the previous config: {error}", state=now)
            return now
        time.sleep(POLL)
    raise ControlError(f"cordon (pid {pid}) did not report the reload within {timeout:g} s",
                       "see its log for the reason")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    try:  # a zombie (exited, not yet reaped by its parent) no longer serves anything
        return stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
