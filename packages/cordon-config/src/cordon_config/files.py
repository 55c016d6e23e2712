"""The only place cordon-config writes files: atomic replacement and a one-time backup."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same dir, fsync, rename, fsync the dir.

    The file keeps its current mode; a new file gets ``mode`` (default 0644, 0600 for secrets).
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    if path.exists():
        final_mode = stat.S_IMODE(path.stat().st_mode) if mode is None else mode
    else:
        final_mode = 0o644 if mode is None else mode
    directory = path.parent
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, final_mode)
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def backup_once(path: Path, suffix: str = ".bak") -> Path | None:
    """Copy ``path`` to ``path + suffix`` unless that backup exists already (O_EXCL); None if no source."""
    path = Path(path)
    if not path.exists():
        return None
    backup = path.with_name(path.name + suffix)
    try:
        fd = os.open(backup, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, stat.S_IMODE(path.stat().st_mode))
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as handle:
        handle.write(path.read_bytes())
        handle.flush()
        os.fsync(handle.fileno())
    return backup


@contextmanager
def locked(path: Path, *, mode: int = 0o600) -> Iterator[None]:
    """Hold an exclusive advisory lock (``fcntl.flock``) for a read-modify-write of ``path``.

    The lock is taken on ``path``'s directory, so no lock file is left beside the user's files; every cordon
    writer in that directory is serialised for the few milliseconds an edit takes. The kernel releases the
    lock when the process dies, so a killed writer never blocks the next one. Do not nest two ``locked``
    calls on files of the same directory (flock would wait on itself). ``mode`` is kept for compatibility.
    """
    import fcntl

    directory = Path(path).parent
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
