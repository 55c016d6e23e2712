"""Line numbers for keys of a TOML text (tomlkit keeps no positions, so we scan the source once).

``key_lines(text)`` maps key paths such as ``("listen",)``, ``("tls", "ca_cert_path")`` or
``("routes", 0, "auth", "secret", "source")`` to 1-based line numbers. Arrays of tables get their element
index in the path. It is a best-effort lexer for reporting; the real parsing is tomlkit's.
"""

from __future__ import annotations

import re
from typing import TypedDict

_PART = re.compile(r"""[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'""")
_KEY = re.compile(
    r"""^\s*((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*'))*)\s*="""
)
_INLINE_KEY = re.compile(r"""([A-Za-z0-9_-]+|"[^"]*"|'[^']*')\s*=""")

Path = tuple[str | int, ...]


class _ScanState(TypedDict):
    """What is open at the end of a line: a multi-line string's quotes, and the bracket depth."""

    ml: str | None
    depth: int


def _split_key(text: str) -> tuple[str, ...]:
    return tuple(part[1:-1] if part[0] in "\"'" else part for part in _PART.findall(text))


def _scan_value(value: str, state: _ScanState) -> None:
    """Track open multi-line strings and bracket depth across lines (mutates ``state``)."""
    i = 0
    n = len(value)
    while i < n:
        ml = state.get("ml")
        if ml:
            end = value.find(str(ml), i)
            if end < 0:
                return
            state["ml"] = None
            i = end + 3
            continue
        ch = value[i]
        if ch == "#":
            return
        if value.startswith('"""', i) or value.startswith("'''", i):
            state["ml"] = value[i : i + 3]
            i += 3
            continue
        if ch == '"':
            i += 1
            while i < n and value[i] != '"':
                i += 2 if value[i] == "\\" else 1
            i += 1
            continue
        if ch == "'":
            end = value.find("'", i + 1)
            i = n if end < 0 else end + 1
            continue
        if ch in "[{":
            state["depth"] += 1
        elif ch in "]}":
            state["depth"] = max(0, state["depth"] - 1)
        i += 1


def key_lines(text: str, headers: list[tuple[Path, int]] | None = None) -> dict[Path, int]:
    """Map every key path (and table header path) in ``text`` to the 1-based line it starts on.

    When ``headers`` is given, every table header is also appended to it as ``(path, line)``.
    """
    lines: dict[Path, int] = {}
    prefix: Path = ()
    aot_index: dict[tuple[str, ...], int] = {}
    state: _ScanState = {"ml": None, "depth": 0}
    for number, raw in enumerate(text.splitlines(), start=1):
        if state["ml"] or state["depth"]:
            _scan_value(raw, state)
            continue
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("["):
            is_aot = stripped.startswith("[[")
            inner = stripped[2:] if is_aot else stripped[1:]
            close = inner.find("]]" if is_aot else "]")
            parts = _split_key(inner[: close if close >= 0 else len(inner)])
            path: list[str | int] = []
            for depth in range(1, len(parts) + 1):
                head = parts[:depth]
                path.append(parts[depth - 1])
                if is_aot and depth == len(parts):
                    aot_index[head] = aot_index.get(head, -1) + 1
                    path.append(aot_index[head])
                elif head in aot_index:
                    path.append(aot_index[head])
            prefix = tuple(path)
            lines.setdefault(prefix, number)
            if headers is not None:
                headers.append((prefix, number))
            continue
        match = _KEY.match(raw)
        if not match:
            continue
        key_path = prefix + _split_key(match.group(1))
        lines.setdefault(key_path, number)
        value = raw[match.end() :]
        if value.lstrip().startswith("{"):
            for inner in _INLINE_KEY.findall(value):
                name = inner[1:-1] if inner[0] in "\"'" else inner
                lines.setdefault((*key_path, name), number)
        _scan_value(value, state)
    return lines


def line_of(lines: dict[Path, int], path: Path) -> int | None:
    """The line of ``path``, else of its nearest enclosing key or table that appears in the text."""
    for end in range(len(path), 0, -1):
        found = lines.get(path[:end])
        if found is not None:
            return found
    return None
