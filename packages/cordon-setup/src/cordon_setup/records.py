"""Plan the edit of one agent file and remember exactly what it changed, so it can be undone exactly.

A *record* is a plain JSON-able dict kept in the integration's manifest:
``path``, ``format`` (dotenv | toml | json | text), ``created`` (no file before cordon), ``original_sha256``,
``written_sha256``, ``backup`` (+ ``backup_created``), ``keys`` (each ``key`` path, the ``value`` written and
the ``previous`` value or raw line it replaced), ``created_containers``, ``hooks``, ``marker``, ``tail``,
``created_dirs``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon_config.files import refuse_symlink

from cordon_setup.apply import backup_path
from cordon_setup.edits import dotenv_file, json_file, toml_file
from cordon_setup.plan import FileChange, read_agent_file, sha256

Record = dict[str, Any]


@dataclass(slots=True)
class Planned:
    """One planned file edit and its record (the record's ``written_sha256`` is the planned result)."""

    change: FileChange
    record: Record


def _missing_dirs(path: Path) -> list[str]:
    out = []
    parent = path.parent
    while not parent.exists():
        out.append(str(parent))
        if parent.parent == parent:
            break
        parent = parent.parent
    return out


def _base_record(path: Path, fmt: str, before: bytes | None, old: Record | None) -> Record:
    refuse_symlink(backup_path(path))  # a link planted where the backup goes: stop before anything is written
    if old is not None:
        record = {k: v for k, v in old.items() if k not in ("keys", "written_sha256")}
        record.setdefault("created_containers", [])
        record.setdefault("hooks", [])
        return record
    backup = backup_path(path)
    backup_created = before is not None and not backup.exists()
    return {
        "path": str(path),
        "format": fmt,
        "created": before is None,
        "original_sha256": sha256(before),
        "backup": str(backup) if before is not None else None,
        "backup_created": backup_created,
        "created_dirs": _missing_dirs(path),
        "created_containers": [],
        "hooks": [],
    }


def _merge_previous(old: Record | None, key: list[str], previous: Any) -> Any:
    """Keep the value from before the first setup when setup runs again."""
    for entry in (old or {}).get("keys", []):
        if entry["key"] == key:
            return entry["previous"]
    return previous


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8")


def _finish(path: Path, before: bytes | None, after: str, record: Record, mode: int, first: bool,
            *, private: bool = True) -> Planned:
    """``first``: no earlier run recorded this file, so an existing file is the user's original: back it up.
    ``private``: the file holds the proxy token (the env contract's proxy URL), so it ends 0600."""
    data = after.encode("utf-8")
    record["written_sha256"] = sha256(data)
    return Planned(FileChange(path, before, data, mode=mode, backup=first, private=private), record)


def plan_dotenv(
    path: Path, env: Mapping[str, str], *, marker: str, old: Record | None, mode: int = 0o600
) -> Planned:
    """Set every variable of ``env`` in a dotenv file."""
    before = read_agent_file(path)
    record = _base_record(path, "dotenv", before, old)
    text, previous = dotenv_file.set_values(_text(before), env, marker=marker)
    record["marker"] = marker
    record["keys"] = [
        {"key": [k], "value": v, "previous": _merge_previous(old, [k], previous[k])} for k, v in env.items()
    ]
    return _finish(path, before, text, record, mode, old is None)


def plan_toml_table(
    path: Path, table: Sequence[str], env: Mapping[str, str], *, old: Record | None, mode: int = 0o600
) -> Planned:
    """Set every variable of ``env`` as a string key of the TOML table ``table``."""
    before = read_agent_file(path)
    record = _base_record(path, "toml", before, old)
    original = _text(before)
    text, previous, created = toml_file.set_values(original, tuple(table), env, where=str(path))
    if old is None:
        record["tail"] = toml_file.tail_of(original)
    record["table"] = list(table)
    for container in created:
        if container not in record["created_containers"]:
            record["created_containers"].append(container)
    record["keys"] = [
        {"key": [*table, k], "value": v, "previous": _merge_previous(old, [*table, k], previous[k])}
        for k, v in env.items()
    ]
    return _finish(path, before, text, record, mode, old is None)


def _hook_entry(command: str, timeout: int) -> dict[str, Any]:
    return {"hooks": [{"type": "command", "command": command, "timeout": timeout}]}


def _has_hook(entries: list[Any], command: str) -> bool:
    for entry in entries:
        for hook in entry.get("hooks", []) if isinstance(entry, dict) else []:
            if isinstance(hook, dict) and hook.get("command") == command:
                return True
    return False


def plan_json_settings(
    path: Path,
    env: Mapping[str, str],
    *,
    hooks: Mapping[str, str],
    old: Record | None,
    timeout: int = 10,
    mode: int = 0o600,
) -> Planned:
    """Set ``env`` keys in the ``env`` object and add one command hook per event (``hooks``: event → command)."""
    before = read_agent_file(path)
    record = _base_record(path, "json", before, old)
    data, style = json_file.load(_text(before), where=str(path))
    env_obj, created = json_file.ensure_object(data, ["env"], where=str(path))
    keys = []
    for name, value in env.items():
        previous = env_obj.get(name)
        if name not in env_obj or env_obj[name] != value:
            env_obj[name] = value
        keys.append(
            {"key": ["env", name], "value": value, "previous": _merge_previous(old, ["env", name], previous)}
        )
    record["keys"] = keys
    hooks_obj, more = json_file.ensure_object(data, ["hooks"], where=str(path))
    created += more
    wanted_hooks = []
    for event, command in hooks.items():
        entries = hooks_obj.get(event)
        if entries is None:
            entries = hooks_obj[event] = []
            created.append(["hooks", event])
        elif not isinstance(entries, list):
            raise json_file.JsonEditError(f"{path}: hooks.{event} must be a JSON array")
        if not _has_hook(entries, command):
            entries.append(_hook_entry(command, timeout))
        wanted_hooks.append({"event": event, "command": command})
    for stale in record.get("hooks", []):  # an earlier run's hook with another command (cordon moved)
        entries = hooks_obj.get(stale["event"])
        if stale not in wanted_hooks and isinstance(entries, list):
            entries[:] = [e for e in entries if not _is_our_entry(e, stale["command"])]
    for container in created:
        if container not in record["created_containers"]:
            record["created_containers"].append(container)
    record["hooks"] = wanted_hooks
    if before is not None and json.loads(_text(before) or "{}") == data:
        return _finish(path, before, _text(before), record, mode, old is None)
    return _finish(path, before, json_file.dump(data, style), record, mode, old is None)


def plan_json_keys(
    path: Path, values: Mapping[tuple[str, ...], Any], *, old: Record | None, mode: int = 0o600,
    private: bool = True,
) -> Planned:
    """Set each key path of ``values`` (``("proxy", "proxyUrl")`` → value) in a JSON object file, creating the
    objects on the way; key order and every other member are kept. ``private``: the values hold the proxy
    token (the file ends 0600)."""
    before = read_agent_file(path)
    record = _base_record(path, "json", before, old)
    data, style = json_file.load(_text(before), where=str(path))
    created: list[list[str]] = []
    keys = []
    for key, value in values.items():
        parent, made = json_file.ensure_object(data, key[:-1], where=str(path))
        created += made
        previous = parent.get(key[-1])
        if key[-1] not in parent or parent[key[-1]] != value:
            parent[key[-1]] = value
        keys.append({"key": list(key), "value": value, "previous": _merge_previous(old, list(key), previous)})
    record["keys"] = keys
    for container in created:
        if container not in record["created_containers"]:
            record["created_containers"].append(container)
    if before is not None and json.loads(_text(before) or "{}") == data:
        return _finish(path, before, _text(before), record, mode, old is None, private=private)
    return _finish(path, before, json_file.dump(data, style), record, mode, old is None, private=private)


def plan_text(path: Path, content: str, *, old: Record | None, mode: int = 0o644, private: bool = False
              ) -> Planned:
    """A whole file cordon owns (the Claude Code skill); ``private`` when ``content`` holds the proxy token."""
    before = read_agent_file(path)
    record = _base_record(path, "text", before, old)
    record["keys"] = []
    return _finish(path, before, content, record, mode, old is None, private=private)


# --- undo ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Undo:
    """What disabling one record does: the file changes (target, maybe its backup) and what to report."""

    changes: list[FileChange] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _restore_or_delete(record: Record, path: Path, current: bytes, undo: Undo) -> bool:
    """Nothing changed since setup: give back the exact original bytes (or remove a file cordon created)."""
    if record["created"]:
        undo.changes.append(FileChange(path, current, None))
        undo.dirs.extend(record.get("created_dirs", []))
        return True
    backup = Path(record["backup"]) if record.get("backup") else None
    original = read_agent_file(backup) if backup is not None else None
    if original is None or sha256(original) != record["original_sha256"]:
        return False
    undo.changes.append(FileChange(path, current, original))
    if record.get("backup_created") and backup is not None:  # always set here: original came from it
        undo.changes.append(FileChange(backup, original, None))
    return True


def _is_empty(fmt: str, text: str) -> bool:
    if fmt == "json":
        try:
            data: object = json.loads(text or "{}")
            return data == {}
        except json.JSONDecodeError:
            return False
    return not text.strip()


def undo_record(record: Record) -> Undo:
    """Plan the removal of exactly what ``record`` says cordon wrote; values changed since are left alone."""
    undo = Undo()
    path = Path(record["path"])
    current = read_agent_file(path)
    if current is None:
        undo.notes.append(f"{path}: already removed")
        return undo
    if sha256(current) == record.get("written_sha256") and _restore_or_delete(record, path, current, undo):
        return undo
    fmt = record["format"]
    text = current.decode("utf-8")
    entries = [(e["key"][-1], e["value"], e["previous"]) for e in record.get("keys", [])]
    where = str(path)
    if fmt == "text":
        undo.left_alone.append(f"{path} (edited since setup)")
        return undo
    if fmt == "dotenv":
        removal = dotenv_file.remove_values(text, entries, marker=record.get("marker"))
        new, left = removal.text, removal.left_alone
    elif fmt == "toml":
        new, left, _ = toml_file.remove_values(
            text,
            tuple(record["table"]),
            entries,
            record.get("created_containers", []),
            tail=record.get("tail"),
            where=where,
        )
    else:
        new, left = _undo_json(record, text, where)
    undo.left_alone.extend(f"{path}: {name} (changed since setup)" for name in left)
    if record["created"] and _is_empty(fmt, new):
        undo.changes.append(FileChange(path, current, None))
        undo.dirs.extend(record.get("created_dirs", []))
    elif new != text:
        undo.changes.append(FileChange(path, current, new.encode("utf-8")))
    if record.get("backup_created") and record.get("backup") and os.path.lexists(record["backup"]):
        undo.notes.append(f"kept the backup {record['backup']} (the file was edited since setup)")
    return undo


def _undo_json(record: Record, text: str, where: str) -> tuple[str, list[str]]:
    data, style = json_file.load(text, where=where)
    left: list[str] = []
    for entry in record.get("keys", []):
        parent = json_file.get_object(data, entry["key"][:-1])
        name = entry["key"][-1]
        if parent is None or name not in parent:
            continue
        if parent[name] != entry["value"]:
            left.append(".".join(entry["key"]))
            continue
        if entry["previous"] is None:
            del parent[name]
        else:
            parent[name] = entry["previous"]
    hooks_obj = json_file.get_object(data, ["hooks"])
    for hook in record.get("hooks", []):
        entries = hooks_obj.get(hook["event"]) if hooks_obj is not None else None
        if not isinstance(entries, list):
            continue
        entries[:] = [e for e in entries if not _is_our_entry(e, hook["command"])]
    json_file.drop_if_empty(data, record.get("created_containers", []))
    return json_file.dump(data, style), left


def _is_our_entry(entry: Any, command: str) -> bool:
    if not isinstance(entry, dict):
        return False
    hooks = entry.get("hooks")
    return (
        isinstance(hooks, list)
        and len(hooks) == 1
        and isinstance(hooks[0], dict)
        and hooks[0].get("command") == command
        and set(entry) <= {"hooks", "matcher"}
    )
