"""Edit one table of a TOML file with tomlkit, keeping comments, order and formatting of everything else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table


class TomlEditError(ValueError):
    """The file is not valid TOML, or the path names something that is not a table."""


def _parse(text: str, where: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise TomlEditError(f"{where} is not valid TOML ({exc}); fix it or move it aside") from None


def _walk(doc: Any, table_path: tuple[str, ...], *, create: bool, where: str) -> tuple[Any, list[list[str]]]:
    """The table at ``table_path``; with ``create``, missing tables are added (their paths returned)."""
    node: Any = doc
    created: list[list[str]] = []
    for depth, part in enumerate(table_path):
        child = node.get(part) if hasattr(node, "get") else None
        if child is None:
            if not create:
                return None, created
            last = depth == len(table_path) - 1
            child = tomlkit.table(is_super_table=not last)
            node[part] = child
            created.append(list(table_path[: depth + 1]))
            child = node[part]
        elif not isinstance(child, Mapping):
            raise TomlEditError(f"{where}: {'.'.join(table_path[: depth + 1])} is not a table")
        node = child
    return node, created


def values(text: str, table_path: tuple[str, ...], *, where: str = "config.toml") -> dict[str, Any]:
    """The plain values of the table at ``table_path`` (empty when absent)."""
    table, _ = _walk(_parse(text, where), table_path, create=False, where=where)
    return {} if table is None else {k: (v.unwrap() if hasattr(v, "unwrap") else v) for k, v in table.items()}


def set_values(
    text: str, table_path: tuple[str, ...], new: Mapping[str, str], *, where: str = "config.toml"
) -> tuple[str, dict[str, str | None], list[list[str]]]:
    """Set string keys in the table at ``table_path`` (creating it).

    Returns the new text, per key the TOML source of the value it replaced (None if new), and the tables
    that had to be created.
    """
    doc = _parse(text, where)
    table, created = _walk(doc, table_path, create=True, where=where)
    previous: dict[str, str | None] = {}
    for key, value in new.items():
        old = table.get(key)
        previous[key] = None if old is None else tomlkit.item(old).as_string()
        if old is not None and (old.unwrap() if hasattr(old, "unwrap") else old) == value:
            continue
        table[key] = value
    if created and not _is_last(doc, table_path):
        table.add(tomlkit.nl())  # keep a blank line before the table that follows
    return tomlkit.dumps(doc), previous, created


def _is_last(doc: Any, table_path: tuple[str, ...]) -> bool:
    """True when the table at ``table_path`` is the last thing in the document."""
    out = tomlkit.dumps(doc).rstrip()
    table, _ = _walk(doc, table_path, create=False, where="")
    last_key = list(table.keys())[-1] if table is not None and len(table) else None
    return last_key is not None and out.endswith(tomlkit.item(table[last_key]).as_string().rstrip())


def remove_values(
    text: str,
    table_path: tuple[str, ...],
    entries: Iterable[tuple[str, str, str | None]],
    created_tables: Iterable[list[str]],
    *,
    tail: str | None = None,
    where: str = "config.toml",
) -> tuple[str, list[str], list[str]]:
    """Undo :func:`set_values` where the value is still cordon's; drop tables cordon created once empty.

    ``tail``: the original file's trailing whitespace, restored when a created table is dropped (tomlkit
    leaves the blank line it put before the table). Returns the new text, the keys left alone (changed
    since) and the keys already gone.
    """
    left: list[str] = []
    missing: list[str] = []
    for key, written, previous in entries:
        # one key per parse: tomlkit's proxies for dotted keys break on a second delete in the same document
        doc = _parse(text, where)
        table, _ = _walk(doc, table_path, create=False, where=where)
        old = table.get(key) if table is not None else None
        if old is None:
            missing.append(key)
            continue
        if (old.unwrap() if hasattr(old, "unwrap") else old) != written:
            left.append(key)
            continue
        if previous is None:
            del table[key]
        else:
            table[key] = tomlkit.parse(f"v = {previous}")["v"]
        text = tomlkit.dumps(doc)
    doc = _parse(text, where)
    dropped = False
    for path in sorted(created_tables, key=len, reverse=True):
        parent, _ = _walk(doc, tuple(path[:-1]), create=False, where=where)
        if parent is None:
            continue
        child = parent.get(path[-1])
        if isinstance(child, Table | dict) and len(child) == 0:
            del parent[path[-1]]
            dropped = True
    out = tomlkit.dumps(doc)
    if dropped and tail is not None:
        body = out.rstrip()
        out = body + tail if body else ""
    return out, left, missing


def tail_of(text: str) -> str:
    """The trailing whitespace of ``text`` (what :func:`remove_values` restores)."""
    return text[len(text.rstrip()) :]
