"""Process hardening for the proxy: no core dumps, not ptrace-attachable by peers, enough descriptors.

Call :func:`harden_process` once at ``cordon start``, before any secret is loaded.
"""

from __future__ import annotations

import gc
import sys

from cordon_config.hardening import PR_GET_DUMPABLE, PR_SET_DUMPABLE, get_dumpable, libc, set_not_dumpable

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]  # no such module on Windows; every use checks for None

__all__ = ["PR_GET_DUMPABLE", "PR_SET_DUMPABLE", "get_dumpable", "harden_process", "release_startup_memory"]


def harden_process() -> dict[str, object]:
    """Disable core dumps and ptrace by same-user peers (Linux), raise the fd soft limit to the hard one.

    Returns what was done, e.g. ``{"dumpable": 0, "core_limit": (0, 0), "nofile": (65536, 65536)}``;
    a step that failed or does not exist on this platform is reported as ``None``. Never raises.
    """
    done: dict[str, object] = {"dumpable": set_not_dumpable(), "core_limit": None, "nofile": None}
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
    lib = libc()
    trim = getattr(lib, "malloc_trim", None) if lib is not None else None
    if trim is None:
        return False
    try:
        return bool(trim(0))
    except OSError:
        return False
