"""Edit a JSON settings file: keep key order and unrelated content, and the file's own indentation."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


class JsonEditError(ValueError):
    """The file is not a JSON object."""


@dataclass(frozen=True, slots=True)
class JsonStyle:
    """How the file was formatted: indentation string and whether it ended with a newline."""

    indent: str = "  "
    final_newline: bool = True


def load(text: str, *, where: str) -> tuple[dict[str, Any], JsonStyle]:
    """Parse ``text`` (empty → ``{}``) and detect its style."""
    if not text.strip():
        return {}, JsonStyle()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise JsonEditError(
            f"{where} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix it or move it aside"
        ) from None
    if not isinstance(data, dict):
        raise JsonEditError(f"{where} must hold a JSON object")
    match = re.search(r"\n([ \t]+)\S", text)
    indent = match.group(1) if match else "  "
    return data, JsonStyle(indent, text.endswith("\n"))


def dump(data: Mapping[str, Any], style: JsonStyle) -> str:
    """Serialise like JSON.stringify(data, null, indent) (what Claude Code writes)."""
    out = json.dumps(data, indent=style.indent, ensure_ascii=False)
    return out + "\n" if style.final_newline else out


def ensure_object(
    data: dict[str, Any], path: Iterable[str], *, where: str
) -> tuple[dict[str, Any], list[list[str]]]:
    """The object at ``path`` inside ``data``, created (and reported) where missing."""
    node = data
    created: list[list[str]] = []
    walked: list[str] = []
    for key in path:
        walked.append(key)
        child = node.get(key)
        if child is None:
            child = {}
            node[key] = child
            created.append(list(walked))
        elif not isinstance(child, dict):
            raise JsonEditError(f"{where}: {'.'.join(walked)} must be a JSON object")
        node = child
    return node, created


def get_object(data: Mapping[str, Any], path: Iterable[str]) -> dict[str, Any] | None:
    """The object at ``path`` or None."""
    node: Any = data
    for key in path:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node if isinstance(node, dict) else None


def drop_if_empty(data: dict[str, Any], created: Iterable[list[str]]) -> None:
    """Remove each created container (deepest first) that is now empty."""
    for path in sorted(created, key=len, reverse=True):
        parent = get_object(data, path[:-1])
        if parent is None:
            continue
        child = parent.get(path[-1])
        if isinstance(child, dict | list) and len(child) == 0:
            del parent[path[-1]]
