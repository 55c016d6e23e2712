"""The only place cordon-config writes files: atomic replacement and a one-time backup, never through a symlink.

cordon-setup writes agent files through these too, so every file cordon edits gets the same rules: a symlink at
the file or at its backup path stops the command (one line naming the link and its target; nothing written),
backups are created ``O_CREAT|O_EXCL|O_NOFOLLOW`` with mode 0600.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SymlinkRefused(OSError):
    """A file cordon would read or write (or its backup) is a symlink: cordon never follows it."""

    def __init__(self, path: Path, target: str) -> None:
        super().__init__(errno.ELOOP, f"{path} is a symlink to {target}; cordon does not read or write through "
                         "symlinks there, so nothing was written", str(path))
        self.path = Path(path)
        self.target = target
        self.hint = f"if {path} should be that file, replace the link with a copy of it (or remove the link), " \
                    "then run the command again"

    def __str__(self) -> str:
        return str(self.strerror)


def refuse_symlink(path: Path) -> None:
    """Raise :class:`SymlinkRefused` when ``path`` is a symlink (dangling or not)."""
    try:
        target = os.readlink(path)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        if exc.errno == errno.EINVAL:  # exists and is not a link
            return
        raise
    raise SymlinkRefused(Path(path), target)


def read_no_follow(path: Path) -> bytes | None:
    """The bytes of the regular file at ``path`` (None when absent), never through a symlink
    (:class:`SymlinkRefused`); a FIFO or device planted there is refused too, without blocking on it."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            refuse_symlink(Path(path))
        raise
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(errno.EINVAL, "not a regular file; cordon only edits regular files", str(path))
        return handle.read()


def atomic_write(path: Path, data: str | bytes, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` atomically: temp file in the same dir, fsync, rename, fsync the dir.

    The file keeps its current mode unless ``mode`` is given; a new file gets ``mode`` (default 0644, 0600 for
    secrets). A symlink at ``path`` is refused (:class:`SymlinkRefused`), never replaced or followed.
    """
    path = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    refuse_symlink(path)
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


def backup_once(path: Path, suffix: str = ".bak", *, to: Path | None = None) -> Path | None:
    """Copy ``path`` to ``path + suffix`` (or to ``to``) unless that backup exists already; None if there is no
    source or the backup exists. The backup is created ``O_CREAT|O_EXCL|O_NOFOLLOW``, mode 0600; a symlink at
    either path is refused (:class:`SymlinkRefused`)."""
    path = Path(path)
    content = read_no_follow(path)
    if content is None:
        return None
    backup = Path(to) if to is not None else path.with_name(path.name + suffix)
    refuse_symlink(backup)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(backup, flags, 0o600)
    except FileExistsError:
        refuse_symlink(backup)  # planted between the check and the open
        return None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)
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
