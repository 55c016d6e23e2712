"""`cordon audit verify|tail|export`: read the scope's audit log (written by the proxy; see cordon_config.audit)."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cordon_config.commands.common import FAILED, OK, Failure, UsageError, print_json, scope_of

_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d|w)")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
FOLLOW_POLL = 0.25


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``--since``/``--until``: an ISO 8601 time (UTC unless it names a zone) or a duration ago (``90m``,
    ``2h``, ``7d``, ``1w``)."""
    now = now or datetime.now(UTC)
    match = _RELATIVE.fullmatch(text.strip())
    if match:
        return now - timedelta(seconds=float(match.group(1)) * _UNITS[match.group(2)])
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"cannot read the time {text!r}",
                         "give an ISO time (2026-05-01, 2026-05-01T12:00Z) or a duration ago (30m, 2h, 7d)"
                         ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _time_of(entry: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(entry.get("time", "")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _size(n: object) -> str:
    value: float = n if isinstance(n, int) else 0
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value}{unit}" if unit == "B" else f"{value:.1f}{unit}"
        value /= 1024
    return str(n)


def format_entry(entry: dict[str, Any]) -> str:
    """One entry as a line of text (no MAC, no chain fields)."""
    when = entry.get("time", "?")
    kind = entry.get("kind")
    if kind == "request":
        route = entry.get("route") or "-"
        line = (f"{when}  {entry.get('decision') or '-':<12} {route:<12} {entry.get('method')} "
                f"{entry.get('host')}{entry.get('path') or ''}  {entry.get('status') or '-'}  "
                f"up={_size(entry.get('bytes_up'))} down={_size(entry.get('bytes_down'))}  "
                f"{entry.get('duration_ms')}ms  token={entry.get('token') or '-'}")
        if entry.get("error"):
            line += f"  error={entry['error']}"
        if entry.get("scrubbed"):
            line += f"  scrubbed={entry['scrubbed']}"
        return line
    if kind == "start":
        return f"{when}  start        cordon {entry.get('version')} (pid {entry.get('pid')}) {entry.get('config')}"
    if kind == "file":
        return f"{when}  file         a new log file ({entry.get('reason')})"
    return f"{when}  {kind}"


def _files(args: argparse.Namespace) -> Any:
    from cordon_config.audit import AuditFiles

    return AuditFiles(scope_of(args).state_dir)


def run_audit(args: argparse.Namespace) -> int:
    from cordon_config.audit import AuditError

    try:
        if args.action == "verify":
            return _verify(args)
        if args.action == "tail":
            return _tail(args)
        return _export(args)
    except AuditError as exc:
        raise Failure(exc.message, exc.hint) from None


def _no_log(files: Any) -> bool:
    from cordon_config.audit import log_files

    if log_files(files):
        return False
    sys.stderr.write(f"cordon: no audit log in {files.state_dir} yet\n")
    sys.stderr.write("hint: cordon start writes it (unless [audit] enabled = false in cordon.toml)\n")
    return True


def _verify(args: argparse.Namespace) -> int:
    from cordon_config.audit import verify

    files = _files(args)
    if _no_log(files):
        return FAILED
    report = verify(files)
    if args.json:
        return _print_report_json(report)
    span = (f"seq {report.first_seq}–{report.last_seq}" if report.first_seq is not None else "no sealed line")
    names = ", ".join(path.name for path in report.files)
    for note in report.notes:
        print(f"note: {note}")
    if report.ok:
        print(f"audit log verified: {report.lines} lines in {len(report.files)} file(s) ({names}), {span}, "
              "chain intact")
        print(f"last MAC: {report.last_mac} (kept elsewhere, it proves later lines came after it)")
        return OK
    for problem in report.problems:
        sys.stderr.write(f"cordon: {problem.message}\n")
    sys.stderr.write(f"cordon: the audit log in {files.state_dir} was changed outside cordon "
                     f"({len(report.problems)} problem(s))\n")
    sys.stderr.write("hint: keep a copy of the files as they are for investigation; new lines keep being chained\n")
    return FAILED


def _print_report_json(report: Any) -> int:
    print_json({
        "ok": report.ok, "files": [str(path) for path in report.files], "lines": report.lines,
        "first_seq": report.first_seq, "last_seq": report.last_seq, "last_mac": report.last_mac,
        "problems": [{"kind": p.kind, "where": p.where, "message": p.message} for p in report.problems],
        "notes": report.notes,
    })
    return OK if report.ok else FAILED


def _raw_lines(files: Any) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    from cordon_config.audit import log_files

    for path in log_files(files):
        try:
            with open(path, "rb") as handle:
                for raw in handle:
                    yield raw.rstrip(b"\n"), _parse(raw)
        except FileNotFoundError:
            continue  # rotated away meanwhile


def _parse(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _emit(raw: bytes, entry: dict[str, Any] | None, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(raw.decode("ascii", "replace") + "\n")
    elif entry is not None:
        sys.stdout.write(format_entry(entry) + "\n")


def _tail(args: argparse.Namespace) -> int:
    files = _files(args)
    if args.lines < 0:
        raise UsageError("--lines must not be negative")
    if _no_log(files) and not args.follow:
        return FAILED
    recent: list[tuple[bytes, dict[str, Any] | None]] = []
    for item in _raw_lines(files):
        recent.append(item)
        if len(recent) > args.lines:
            recent.pop(0)
    for raw, entry in recent:
        _emit(raw, entry, args.json)
    sys.stdout.flush()
    if args.follow:
        _follow(files.log, args.json)
    return OK


def _follow(path: Path, as_json: bool) -> None:
    """Print lines appended to ``path`` as they come, across rotations, until Ctrl-C."""
    handle = None
    inode = None
    position = 0
    buffer = b""
    while True:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            time.sleep(FOLLOW_POLL)
            continue
        if handle is None or info.st_ino != inode or info.st_size < position:
            if handle is not None:
                handle.close()
            fresh = handle is not None  # a rotated or new file: read it from its start
            handle = open(path, "rb")  # noqa: SIM115 - kept open while following
            inode = info.st_ino
            position = 0 if fresh else info.st_size
            handle.seek(position)
            buffer = b""
        data = handle.read()
        if data:
            position += len(data)
            buffer += data
            *complete, buffer = buffer.split(b"\n")
            for raw in complete:
                if raw:
                    _emit(raw, _parse(raw), as_json)
            sys.stdout.flush()
        else:
            time.sleep(FOLLOW_POLL)


def _export(args: argparse.Namespace) -> int:
    files = _files(args)
    since = parse_since(args.since) if args.since else None
    until = parse_since(args.until) if args.until else None
    if _no_log(files):
        return FAILED
    for raw, entry in _raw_lines(files):
        if entry is None:
            continue
        moment = _time_of(entry)
        if since is not None and (moment is None or moment < since):
            continue
        if until is not None and (moment is None or moment > until):
            continue
        _emit(raw, entry, args.json)
    return OK
