"""The only module of cordon-setup that writes agent and state files: one-time backups, atomic writes.

Every write goes through :mod:`cordon_config.files`, so no symlink at a file or backup path is ever followed,
backups are created ``O_CREAT|O_EXCL|O_NOFOLLOW`` 0600, and a file holding the proxy token ends 0600.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import atomic_write, backup_once

from cordon_setup.plan import FileChange, read_agent_file, refuse_linked_dirs

BACKUP_SUFFIX = ".cordon.bak"


class ConflictError(RuntimeError):
    """A file changed on disk between planning and applying; nothing further was written."""


PRIVATE_MODE = 0o600


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one change did: the change, the backup it created (None if none) and, for a file that
    holds the proxy token, the looser mode it had before it was made 0600 (None if it was private already)."""

    change: FileChange
    backup: Path | None
    tightened_from: int | None = None


def backup_path(path: Path) -> Path:
    """``<name>.cordon.bak`` beside ``path``."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def _ensure_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def apply_changes(changes: Iterable[FileChange]) -> list[Applied]:
    """Apply each change that changes something; refuse (ConflictError) a file that moved since planning.

    A private file (it holds the proxy token) whose content is already right is still made 0600. A symlinked
    directory on the way to any of the files (see ``FileChange.within``) stops it before anything is written.
    """
    changes = list(changes)
    for change in changes:
        refuse_linked_dirs(change)
    done: list[Applied] = []
    for change in changes:
        path = Path(change.path)
        if not change.changed:
            if change.private and change.before is not None:
                loose = _make_private(path)
                if loose is not None:
                    done.append(Applied(change, None, loose))
            continue
        if read_agent_file(path) != change.before:
            raise ConflictError(f"{path} changed while cordon was planning; run the command again")
        backup = None
        if change.backup and change.before is not None:
            if change.backup_path is not None:
                change.backup_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            backup = backup_once(path, BACKUP_SUFFIX, to=change.backup_path)
        loose = None
        if change.after is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        else:
            _ensure_parent(path)
            if change.private:
                loose = _loose_mode(path)
                atomic_write(path, change.after, mode=PRIVATE_MODE)
            else:
                atomic_write(path, change.after, mode=change.mode if change.before is None else None)
        done.append(Applied(change, backup, loose))
    return done


def _loose_mode(path: Path) -> int | None:
    """The mode of an existing file when it lets group or others in (None: absent or private already)."""
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
    except FileNotFoundError:
        return None
    return mode if mode & 0o077 else None


def _make_private(path: Path) -> int | None:
    """chmod 600 without following a symlink; returns the looser mode it had, or None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            read_agent_file(path)  # raises SymlinkRefused, naming the link and its target
        raise
    try:
        mode = stat.S_IMODE(os.fstat(fd).st_mode)
        if not mode & 0o077:
            return None
        os.fchmod(fd, PRIVATE_MODE)
        return mode
    finally:
        os.close(fd)


def remove_empty_dirs(dirs: Iterable[str | Path]) -> None:
    """Remove each directory if it is empty (deepest first); leave anything non-empty alone."""
    for directory in sorted({Path(d) for d in dirs}, key=lambda p: len(p.parts), reverse=True):
        try:
            directory.rmdir()
        except OSError:
            pass
