"""Keep same-user processes out of a cordon process: ``prctl(PR_SET_DUMPABLE, 0)`` on Linux (stdlib, ctypes).

A process that is not dumpable leaves no core dump, and its ``/proc/<pid>/environ``, ``mem``, ``fd`` and
``ptrace`` are refused to other processes of the same non-root user. The kernel makes a process dumpable
again when it executes an ordinary program, so a child started after this call is not affected (it is the
untrusted side). Used by ``cordon start`` (the proxy holds the secrets) and by ``cordon run`` (its
environment is the user's shell's, with the secrets the proxy reads).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "get_dumpable", "libc", "set_not_dumpable"]

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def libc() -> ctypes.CDLL | None:
    """The C library on Linux (``use_errno``), None elsewhere or when it cannot be loaded."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def get_dumpable() -> int | None:
    """The process's ``PR_GET_DUMPABLE`` value on Linux, None elsewhere or when prctl is unavailable."""
    lib = libc()
    if lib is None:
        return None
    value = lib.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if value < 0 else int(value)


def set_not_dumpable() -> int | None:
    """Make this process non-dumpable (Linux); the resulting ``PR_GET_DUMPABLE`` value (0), or None where
    that is not possible here. Never raises."""
    lib = libc()
    if lib is None:
        return None
    try:
        if lib.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
            return None
    except (AttributeError, OSError):
        return None
    return get_dumpable()
