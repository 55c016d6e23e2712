"""Process hardening for the proxy: no core dumps, not ptrace-attachable by peers, enough descriptors.

Call :func:`harden_process` once at ``cordon start``, before any secret is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]  # no such module on Windows; every use checks for None

__all__ = ["PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "get_dumpable", "harden_process", "release_startup_memory"]

PR_SET_DUMPABLE = 4
PR_GET_DUMPABLE = 3


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def get_dumpable() -> int | None:
    """The process's ``PR_GET_DUMPABLE`` value on Linux, None elsewhere or when prctl is unavailable."""
    libc = _libc()
    if libc is None:
        return None
    value = libc.prctl(PR_GET_DUMPABLE, 0, 0, 0, 0)
    return None if value < 0 else int(value)


def harden_process() -> dict[str, object]:
    """Disable core dumps and ptrace by same-user peers (Linux), raise the fd soft limit to the hard one.

    Returns what was done, e.g. ``{"dumpable": 0, "core_limit": (0, 0), "nofile": (65536, 65536)}``;
    a step that failed or does not exist on this platform is reported as ``None``. Never raises.
    """
    done: dict[str, object] = {"dumpable": None, "core_limit": None, "nofile": None}
    libc = _libc()
    if libc is not None:
        try:
            if libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0:
                done["dumpable"] = get_dumpable()
        except (AttributeError, OSError):
            pass
    if resource is not None:
        try:
            resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
            done["core_limit"] = resource.getrlimit(resource.RLIMIT_CORE)
        except (ValueError, OSError):
            pass
        try:
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            target = hard
            if sys.platform == "darwin" and (hard == resource.RLIM_INFINITY or hard > 10240):
                target = 10240  # macOS refuses a soft limit above OPEN_MAX
            if target != soft and (soft != resource.RLIM_INFINITY):
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            done["nofile"] = resource.getrlimit(resource.RLIMIT_NOFILE)
        except (ValueError, OSError):
            pass
    return done


def release_startup_memory() -> bool:
    """Give the memory that start-up used only briefly (config, CA checks, the bundle) back to the system:
    a full collection, then glibc's ``malloc_trim(0)`` (about 0.6 MiB of idle RSS). True when trimmed."""
    gc.collect()
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None) if libc is not None else None
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except OSError:
        return False
