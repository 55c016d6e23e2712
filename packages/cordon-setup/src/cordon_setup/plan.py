"""What setup would do, as data: :class:`FileChange` values and their unified-diff rendering.

Planning never writes; :mod:`cordon_setup.apply` is the only module that does.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class FileChange:
    """Replace ``before`` with ``after`` at ``path``.

    ``before`` None: the file does not exist yet; ``after`` None: delete it. ``mode`` applies to a new file
    (an existing file keeps its mode). ``private``: the file holds the proxy token, so it ends 0600 whatever
    mode it had. ``backup``: copy an existing file once (0600) to ``backup_path``, by default
    ``<name>.cordon.bak`` beside it, before the first change. ``summary``: a diff would be noise (a CA bundle)
    or must not be shown (a backup holding a key): render one line instead. ``within``: the directory (the
    project, home, or the parent of the agent's own directory) below which no directory on the way to the file
    or its backup may be a symlink.
    """

    path: Path
    before: bytes | None
    after: bytes | None
    mode: int | None = None
    backup: bool = False
    summary: bool = False
    private: bool = False
    backup_path: Path | None = None
    within: Path | None = None

    @property
    def changed(self) -> bool:
        return self.before != self.after

    @property
    def action(self) -> str:
        if self.after is None:
            return "delete"
        return "create" if self.before is None else "update"


def sha256(data: bytes | None) -> str | None:
    """Hex sha256 of ``data`` (None for None)."""
    return None if data is None else hashlib.sha256(data).hexdigest()


def read_bytes(path: Path) -> bytes | None:
    """The file's bytes, or None when it does not exist."""
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        return None


def read_agent_file(path: Path) -> bytes | None:
    """An agent file's (or its backup's) bytes, None when absent; never through a symlink: one planted there
    raises :class:`~cordon_config.files.SymlinkRefused` (it names the link and its target)."""
    from cordon_config.files import read_no_follow

    return read_no_follow(Path(path))


def refuse_linked_dirs(change: FileChange) -> None:
    """:func:`~cordon_config.files.refuse_symlinked_dirs` for the change's file and its backup (``within``)."""
    from cordon_config.files import refuse_symlinked_dirs

    if change.within is not None:
        refuse_symlinked_dirs(Path(change.path), change.within)
        if change.backup_path is not None:
            refuse_symlinked_dirs(change.backup_path, change.within)


def _lines(data: bytes | None) -> list[str]:
    if data is None:
        return []
    return data.decode("utf-8", errors="replace").splitlines(keepends=True)


def _mask(text: str, masks: Mapping[str, str]) -> str:
    for secret, label in masks.items():
        if secret:
            text = text.replace(secret, label)
    return text


def render_diff(change: FileChange, masks: Mapping[str, str] | None = None) -> str:
    """A unified diff of one change (``/dev/null`` for a side that does not exist).

    ``masks`` maps values never to be shown (proxy tokens) to the label printed instead.
    """
    if not change.changed:
        return ""
    if change.summary:
        size = 0 if change.after is None else len(change.after)
        return f"{change.action} {change.path} ({size} bytes)\n"
    old = "/dev/null" if change.before is None else f"a{change.path}"
    new = "/dev/null" if change.after is None else f"b{change.path}"
    out = []
    for line in difflib.unified_diff(_lines(change.before), _lines(change.after), old, new):
        out.append(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n")
    return _mask("".join(out), masks or {})


def render_plan(changes: Iterable[FileChange], masks: Mapping[str, str] | None = None) -> str:
    """Every change's diff, in order."""
    return "".join(render_diff(c, masks) for c in changes if c.changed)
