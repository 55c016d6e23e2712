"""Destroying a replaced CA key: its bytes overwritten through an fd opened before the rename, then unlinked.

Everything else the CA writes goes through :mod:`cordon_config.files` (atomic replacement, private directories,
the lock), like every other file cordon writes.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def open_for_destroy(path: Path) -> int | None:
    """An fd on the regular file at ``path`` (never through a symlink) to overwrite it later, or None."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except (FileNotFoundError, OSError):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def overwrite_and_close(fd: int) -> None:
    """Overwrite the whole file behind ``fd`` with random bytes, fsync it, close it (its data is gone even when
    the name was already replaced or unlinked)."""
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, secrets.token_bytes(size))
        os.fsync(fd)
        os.ftruncate(fd, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def destroy(path: Path) -> bool:
    """Overwrite a (key) file with random bytes and unlink it; never follows a symlink. True if one was there."""
    fd = open_for_destroy(path)
    if fd is None:
        return False
    try:
        os.unlink(path)
    finally:
        overwrite_and_close(fd)
    return True
