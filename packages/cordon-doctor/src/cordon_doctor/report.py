"""Rendering doctor findings: symbols and colour on a TTY, plain words otherwise, or a stable JSON document."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from cordon_doctor.finding import Finding

SCHEMA = "cordon.doctor/1"
_TTY_MARK = {"ok": "✓", "warn": "!", "fail": "✗", "skip": "-"}
_PLAIN_MARK = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}
_COLOUR = {"ok": "32", "warn": "33", "fail": "31", "skip": "2"}


def use_colour(stream: TextIO) -> bool:
    """Colour only on a TTY, and never when ``NO_COLOR`` is set."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def paint(text: str, code: str, colour: bool) -> str:
    """Wrap ``text`` in an ANSI colour when ``colour``."""
    return f"\x1b[{code}m{text}\x1b[0m" if colour else text


def render_text(findings: Iterable[Finding], *, tty: bool) -> str:
    """One line per finding (``✓ check: message`` on a TTY, ``ok    check: message`` otherwise),
    followed by an indented ``fix:`` line for every non-ok finding, and a summary line."""
    lines: list[str] = []
    findings = list(findings)
    for f in findings:
        if tty:
            mark = paint(_TTY_MARK[f.status], _COLOUR[f.status], True)
        else:
            mark = f"{_PLAIN_MARK[f.status]:<4}"
        lines.append(f"{mark} {f.check}: {f.message}")
        if f.fix and f.status in ("warn", "fail"):
            lines.append(f"     fix: {f.fix}")
    lines.append(summary_line(findings))
    return "\n".join(lines) + "\n"


def counts(findings: Sequence[Finding]) -> dict[str, int]:
    """How many findings have each status."""
    out = {"ok": 0, "warn": 0, "fail": 0, "skip": 0}
    for f in findings:
        out[f.status] += 1
    return out


def summary_line(findings: Sequence[Finding]) -> str:
    """``3 ok, 1 warning, 0 failures``."""
    c = counts(findings)
    text = f"{c['ok']} ok, {c['warn']} warning{'s' if c['warn'] != 1 else ''}, "
    text += f"{c['fail']} failure{'s' if c['fail'] != 1 else ''}"
    if c["skip"]:
        text += f", {c['skip']} skipped"
    return text


def exit_code(findings: Sequence[Finding]) -> int:
    """0 when nothing failed, 1 otherwise."""
    return 1 if any(f.status == "fail" for f in findings) else 0


def to_json(findings: Sequence[Finding], **extra: Any) -> str:
    """The ``--json`` document: ``{"schema", "ok", "counts", "checks": [...], ...extra}``."""
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "ok": exit_code(findings) == 0,
        "counts": counts(findings),
        "checks": [f.as_dict() for f in findings],
    }
    doc.update(extra)
    return json.dumps(doc, indent=2) + "\n"
