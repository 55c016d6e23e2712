"""Process helpers: CPU time and memory of a process tree from /proc, waiting for ports, stopping children."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from cordon_config.ports import free_port

__all__ = ["cpu_seconds", "descendants", "free_port", "memory_mib", "pinned", "stop", "wait_port"]

CLK_TCK = os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[int]:
    """``pid`` and all its descendants (by scanning /proc)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime (seconds) summed over the process tree rooted at ``pid``."""
    total = 0
    for p in descendants(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def memory_mib(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MiB summed over the process tree rooted at ``pid``."""
    rss = hwm = 0
    for p in descendants(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss / 1024, hwm / 1024


def wait_port(port: int, proc: subprocess.Popen | None, timeout: float, what: str) -> None:
    """Wait until 127.0.0.1:``port`` accepts connections (fail early if ``proc`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout:.0f} s")


def stop(proc: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process (and its descendants), SIGKILL what is left after ``timeout``."""
    if proc.poll() is not None:
        return
    tree = descendants(proc.pid)
    for p in tree:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pass


def pinned(argv: list[str], core: int | None) -> list[str]:
    """``argv`` prefixed with ``taskset -c core`` (unchanged when pinning is off)."""
    return argv if core is None else ["taskset", "-c", str(core), *argv]
