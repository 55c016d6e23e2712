"""Private file helpers: 0700 directories, O_EXCL|O_NOFOLLOW temp files, atomic replace, a file lock.

cordon_ca's library modules import no sibling package, so these small helpers live here rather than in
cordon_config.files (which the CLI may use).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path

_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def ensure_private_dir(path: Path) -> None:
    """Create ``path`` (and any missing parents) with mode 0700; existing directories are left as they are."""
    path = Path(path)
    missing: list[Path] = []
    current = path
    while not current.exists():
        missing.append(current)
        if current.parent == current:
            break
        current = current.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:
            continue
        os.chmod(directory, 0o700)  # umask may have cleared owner bits; never add group/other ones


def fsync_dir(directory: Path) -> None:
    """fsync a directory so a rename into it is durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new_file(directory: Path, data: bytes, *, mode: int, prefix: str, durable: bool = True) -> Path:
    """Write ``data`` into a fresh file in ``directory`` created O_EXCL|O_NOFOLLOW with ``mode``.

    ``durable`` fsyncs it (skip for short-lived scratch files)."""
    while True:
        tmp = Path(directory) / f".{prefix}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, _CREATE_FLAGS, mode)
        except FileExistsError:
            continue
        break
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return tmp


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Replace ``path`` with ``data`` atomically (temp file in the same dir created 0600/``mode``, rename)."""
    path = Path(path)
    tmp = write_new_file(path.parent, data, mode=mode, prefix=path.name)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


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


@contextlib.contextmanager
def file_lock(lock_path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (created 0600) for the duration of the block."""
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories non-root PATHs often lack."""
    found = shutil.which(name)
    if found:
        return found
    extra = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
    return shutil.which(name, path=extra)
