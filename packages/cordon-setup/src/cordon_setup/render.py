"""Render an environment mapping for a shell, fish, a dotenv file or JSON, quoting safely for any value."""

from __future__ import annotations

TYPE_CHECKING = False  # imported by `cordon env`'s fast path: no typing, re or json at import time
if TYPE_CHECKING:
    from collections.abc import Mapping

FORMATS = ("shell", "fish", "dotenv", "json")
_NAME_START = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_NAME_REST = _NAME_START | frozenset("0123456789")


def _check_name(name: str) -> str:
    """``name`` if it matches ``[A-Za-z_][A-Za-z0-9_]*``, else ValueError."""
    if not name or name[0] not in _NAME_START or not _NAME_REST.issuperset(name):
        raise ValueError(f"not a valid environment variable name: {name!r}")
    return name


def sh_quote(value: str) -> str:
    """POSIX single quotes: everything literal; an embedded ``'`` becomes ``'\\''``."""
    return "'" + value.replace("'", "'\\''") + "'"


def fish_quote(value: str) -> str:
    """fish single quotes: only ``\\`` and ``'`` are special inside them."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def dotenv_quote(value: str) -> str:
    """A dotenv value as dotenvy (Codex) and python-dotenv read it back unchanged.

    Single quotes are literal, so they are used unless the value holds a ``'`` or a newline; then double
    quotes with ``\\``, ``"``, ``$`` and newlines escaped.
    """
    if "'" not in value and "\n" not in value and "\r" not in value:
        return "'" + value + "'"
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("$", "\\$")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )
    return '"' + escaped + '"'


def dotenv_line(name: str, value: str) -> str:
    """One ``NAME='value'`` line (no newline)."""
    return f"{_check_name(name)}={dotenv_quote(value)}"


def render_env(env: Mapping[str, str], fmt: str) -> str:
    """The whole mapping in ``fmt`` (shell, fish, dotenv, json), newline-terminated."""
    if fmt == "json":
        import json

        return json.dumps(dict(env), indent=2) + "\n"
    lines = []
    for name, value in env.items():
        _check_name(name)
        if fmt == "shell":
            lines.append(f"export {name}={sh_quote(value)}")
        elif fmt == "fish":
            lines.append(f"set -gx {name} {fish_quote(value)}")
        elif fmt == "dotenv":
            lines.append(dotenv_line(name, value))
        else:
            raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    return "".join(line + "\n" for line in lines)
