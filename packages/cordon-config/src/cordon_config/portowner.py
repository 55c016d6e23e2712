"""Which process listens on a local TCP port, where the OS says (Linux: ``/proc``; elsewhere ``lsof``).

Used to name what holds a scope's port when it is not that scope's cordon. Best effort: None when the OS does
not say (another user's process, no ``lsof``); never raises.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PortOwner", "port_owner"]

_LISTEN = "0A"


@dataclass(frozen=True, slots=True)
class PortOwner:
    """A listening process: its PID and command line (shortened)."""

    pid: int
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid}: {self.command}" if self.command else f"pid {self.pid}"


def _listening_inodes(port: int, proc: Path) -> set[str]:
    inodes: set[str] = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[3] != _LISTEN:
                continue
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port:
                inodes.add(fields[9])
    return inodes


def _command(pid: str, proc: Path) -> str:
    try:
        raw = (proc / pid / "cmdline").read_bytes()
    except OSError:
        return ""
    text = " ".join(" ".join(part.decode(errors="replace").split()) for part in raw.split(b"\0") if part)
    return text if len(text) <= 120 else text[:117] + "..."


def _from_proc(port: int, proc: Path) -> PortOwner | None:
    inodes = _listening_inodes(port, proc)
    if not inodes:
        return None
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        pids = [name for name in os.listdir(proc) if name.isdigit()]
    except OSError:
        return None
    for pid in pids:
        fd_dir = proc / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:  # another user's process, or gone
            continue
        for fd in fds:
            try:
                if os.readlink(fd_dir / fd) in wanted:
                    return PortOwner(int(pid), _command(pid, proc))
            except OSError:
                continue
    return None


def _from_lsof(port: int) -> PortOwner | None:
    lsof = shutil.which("lsof")
    if lsof is None:
        return None
    try:
        out = subprocess.run(
            [lsof, "-nP", f"-iTCP:{port}", "-sTCP:LISTEN", "-Fpc"], capture_output=True, text=True, timeout=5
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    pid, command = None, ""
    for line in out.splitlines():
        if line.startswith("p") and pid is None:
            pid = int(line[1:]) if line[1:].isdigit() else None
        elif line.startswith("c") and pid is not None and not command:
            command = line[1:]
    return PortOwner(pid, command) if pid is not None else None


def port_owner(port: int, *, proc: Path = Path("/proc")) -> PortOwner | None:
    """The process listening on TCP ``port`` (any local address), or None when the OS does not say."""
    if sys.platform.startswith("linux") and (proc / "net" / "tcp").exists():
        return _from_proc(port, proc)
    return _from_lsof(port)
