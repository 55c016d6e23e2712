"""The only module of cordon-setup that writes agent and state files: one-time backups, atomic writes."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import atomic_write, backup_once

from cordon_setup.plan import FileChange, read_bytes

BACKUP_SUFFIX = ".cordon.bak"


class ConflictError(RuntimeError):
    """A file changed on disk between planning and applying; nothing further was written."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying one change did: the change and the backup it created (None if none)."""

    change: FileChange
    backup: Path | None


def backup_path(path: Path) -> Path:
    """``<name>.cordon.bak`` beside ``path``."""
    return path.with_name(path.name + BACKUP_SUFFIX)


def _ensure_parent(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)


def apply_changes(changes: Iterable[FileChange]) -> list[Applied]:
    """Apply each change that changes something; refuse (ConflictError) a file that moved since planning."""
    done: list[Applied] = []
    for change in changes:
        if not change.changed:
            continue
        path = Path(change.path)
        if read_bytes(path) != change.before:
            raise ConflictError(f"{path} changed while cordon was planning; run the command again")
        backup = None
        if change.backup and change.before is not None:
            backup = backup_once(path, BACKUP_SUFFIX)
        if change.after is None:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        else:
            _ensure_parent(path)
            atomic_write(path, change.after, mode=change.mode if change.before is None else None)
        done.append(Applied(change, backup))
    return done


def remove_empty_dirs(dirs: Iterable[Path]) -> None:
    """Remove each directory if it is empty (deepest first); leave anything non-empty alone."""
    for directory in sorted({Path(d) for d in dirs}, key=lambda p: len(p.parts), reverse=True):
        try:
            directory.rmdir()
        except OSError:
            pass
