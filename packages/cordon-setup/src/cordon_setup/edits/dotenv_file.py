"""Edit a dotenv file line by line: set/replace ``NAME=value`` lines, keep comments and everything else."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cordon_setup.render import dotenv_line

_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.]*)\s*=(.*)$")


def parse_value(raw: str) -> str:
    """The value of the text after ``=``, as dotenvy and python-dotenv read it (single line)."""
    raw = raw.strip()
    if raw.startswith("'"):
        end = raw.find("'", 1)
        return raw[1:end] if end != -1 else raw[1:]
    if raw.startswith('"'):
        out = []
        i = 1
        while i < len(raw):
            ch = raw[i]
            if ch == "\\" and i + 1 < len(raw):
                nxt = raw[i + 1]
                out.append({"n": "\n", "r": "\r", "t": "\t"}.get(nxt, nxt))
                i += 2
                continue
            if ch == '"':
                break
            out.append(ch)
            i += 1
        return "".join(out)
    comment = re.search(r"\s#", raw)
    return (raw[: comment.start()] if comment else raw).strip()


def _find(lines: list[str], key: str) -> int | None:
    for index, line in enumerate(lines):
        match = _LINE.match(line.rstrip("\r\n"))
        if match and match.group(1) == key:
            return index
    return None


def values(text: str) -> dict[str, str]:
    """Every ``NAME=value`` in the file; the first occurrence wins (dotenvy, used by Codex, keeps the first)."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if match and match.group(1) not in out:
            out[match.group(1)] = parse_value(match.group(2))
    return out


def _eol(line: str) -> str:
    return line[len(line.rstrip("\r\n")) :]


def set_values(
    text: str, new: Mapping[str, str], *, marker: str | None = None
) -> tuple[str, dict[str, str | None]]:
    """Set each name to its value: replace the first existing line in place, append the rest at the end
    (after ``marker``, a comment line, unless it is there already).

    Returns the new text and, per name, the raw line it replaced (None when the name was new).
    """
    lines = text.splitlines(keepends=True)
    previous: dict[str, str | None] = {}
    append: list[str] = []
    for key, value in new.items():
        index = _find(lines, key)
        if index is None:
            previous[key] = None
            append.append(dotenv_line(key, value))
            continue
        line = lines[index]
        previous[key] = line.rstrip("\r\n")
        match = _LINE.match(previous[key] or "")
        if match and parse_value(match.group(2)) == value:
            continue
        lines[index] = dotenv_line(key, value) + (_eol(line) or "\n")
    if append:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        if marker is not None and _find_exact(lines, marker) is None:
            lines.append(marker + "\n")
        lines.extend(line + "\n" for line in append)
    return "".join(lines), previous


def _find_exact(lines: list[str], wanted: str) -> int | None:
    for index, line in enumerate(lines):
        if line.rstrip("\r\n") == wanted:
            return index
    return None


@dataclass(frozen=True, slots=True)
class Removal:
    """The result of undoing: the new text, names left alone (changed by the user) and names already gone."""

    text: str
    left_alone: list[str]
    missing: list[str]


def remove_values(
    text: str, entries: Iterable[tuple[str, str, str | None]], *, marker: str | None = None
) -> Removal:
    """Undo :func:`set_values`: for each (name, value written, previous raw line), restore the previous line
    or drop ours, but only where the value is still the one cordon wrote."""
    lines = text.splitlines(keepends=True)
    left: list[str] = []
    missing: list[str] = []
    for key, written, previous in entries:
        index = _find(lines, key)
        if index is None:
            missing.append(key)
            continue
        match = _LINE.match(lines[index].rstrip("\r\n"))
        if not match or parse_value(match.group(2)) != written:
            left.append(key)
            continue
        if previous is None:
            del lines[index]
        else:
            lines[index] = previous + (_eol(lines[index]) or "\n")
    if marker is not None and not left:
        index = _find_exact(lines, marker)
        if index is not None:
            del lines[index]
    return Removal("".join(lines), left, missing)
