"""The audit log: one JSON line per routed request and per policy decision, chained so that tampering shows.

Files, all in the scope's state dir (outside the project the agent writes), mode 0600:

* ``audit.log`` (newest), ``audit.log.1`` … ``audit.log.<keep_files - 1>`` (older): JSON lines;
* ``audit.key``: 32 random bytes, the MAC key (created ``O_EXCL|O_NOFOLLOW``);
* ``audit.head``: the last sequence number and MAC the proxy wrote, with a MAC of its own (updated about once
  a second and when the proxy stops), so lines deleted at the end are found too.

Each line carries ``seq`` (1, 2, 3 … across files and restarts), ``prev`` (the MAC of the line before; empty
for the very first) and ``mac``: the keyed BLAKE2b-256 (RFC 7693's MAC mode; a quarter of HMAC-SHA256's cost per
line) of ``"cordon-audit\\0"`` and the line's JSON text without its ``mac`` member. :func:`verify` re-computes every MAC and follows the chain, and names each line that was
edited, deleted, inserted or moved. The first line of each file is a ``file`` record chained to the last line
of the previous file, so rotation keeps the chain; the oldest kept file starts where rotation cut.

A line never holds a header value, a query string or a body. What it holds: ``time`` (UTC), ``kind``
(``request`` | ``start`` | ``stop`` | ``file``), ``scope``, and for requests ``route``, ``token``, ``method``,
``host``, ``path``, ``status``, ``bytes_up``, ``bytes_down``, ``duration_ms``, ``decision``
(``injected`` | ``scrubbed`` | ``denied`` | ``rate-limited`` | ``failed``), ``error``, ``scrubbed``.

Limits (docs/security.md): whoever can read ``audit.key`` can write a chain that verifies; the chain shows
changes made by anything that can write the log but not read the key, and every change made after a copy of
the log (or of ``audit.head``) was taken elsewhere. Stdlib only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon_config.files import PrivateFileError, ensure_key_file, read_key_file, read_private

__all__ = [
    "HEAD_NAME",
    "KEY_NAME",
    "LOG_NAME",
    "AuditError",
    "AuditFiles",
    "Problem",
    "Report",
    "ensure_key",
    "head_text",
    "last_entry",
    "load_key",
    "log_files",
    "read_entries",
    "read_head",
    "seal",
    "seal_text",
    "verify",
]

LOG_NAME = "audit.log"
KEY_NAME = "audit.key"
HEAD_NAME = "audit.head"
_CONTEXT = b"cordon-audit\0"
_HEAD_CONTEXT = b"cordon-audit-head\0"
_MAC_TAIL = re.compile(rb',"mac":"([0-9a-f]{64})"\}$')


class AuditError(Exception):
    """The audit key or files cannot be read or made (one line, plus the fix)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class AuditFiles:
    """Where a scope's audit files live."""

    state_dir: Path

    @property
    def log(self) -> Path:
        return self.state_dir / LOG_NAME

    @property
    def key(self) -> Path:
        return self.state_dir / KEY_NAME

    @property
    def head(self) -> Path:
        return self.state_dir / HEAD_NAME

    def rotated(self, index: int) -> Path:
        """``audit.log.<index>`` (1 = the newest rotated file)."""
        return self.state_dir / f"{LOG_NAME}.{index}"


# -- the key ----------------------------------------------------------------------------------------------------


def _read_private(path: Path, what: str, *, key: bool = False) -> bytes | None:
    """The bytes of a private regular file (:func:`cordon_config.files.read_private`, or with ``key``
    :func:`cordon_config.files.read_key_file`; None when absent)."""
    try:
        return read_key_file(path, what, owner=False) if key else read_private(path, what, owner=False)
    except PrivateFileError as exc:
        if exc.kind == "damaged":
            raise AuditError(str(exc),
                             hint="keep the log for reference, move it and the key away, and restart cordon") from None
        if exc.kind == "not-regular":
            raise AuditError(str(exc), f"remove it: rm {path}") from None
        if exc.kind == "loose":
            raise AuditError(f"{what} {path} is accessible by group or others", f"chmod 600 {path}") from None
        raise AuditError(f"cannot read {what} {path}: {exc.strerror}",
                         "it must be a regular file of yours, not a symlink") from None


def load_key(files: AuditFiles) -> bytes | None:
    """The scope's audit key, or None when there is none yet (raises AuditError for a broken one)."""
    return _read_private(files.key, "the audit key", key=True)


def ensure_key(files: AuditFiles) -> bytes:
    """The scope's audit key, created (32 random bytes, 0600, never over a symlink) when missing."""
    try:
        return ensure_key_file(files.key, lambda _: load_key(files))
    except FileNotFoundError:
        raise AuditError(f"{files.key} vanished while it was being created", "start cordon again") from None
    except OSError as exc:
        raise AuditError(f"cannot create the audit key {files.key}: {exc.strerror}",
                         "run cordon as the user who owns the state dir") from None


# -- writing ----------------------------------------------------------------------------------------------------


def _mac(key: bytes, body: bytes) -> str:
    return hashlib.blake2b(_CONTEXT + body, key=key, digest_size=32).hexdigest()


def seal(key: bytes, entry: Mapping[str, Any]) -> tuple[bytes, str]:
    """``entry`` (which holds ``seq`` and ``prev``) as one sealed line (with its newline), and its MAC."""
    return seal_text(key, json.dumps(entry, separators=(",", ":"), ensure_ascii=True).encode("ascii"))


def seal_text(key: bytes, body: bytes) -> tuple[bytes, str]:
    """A JSON object's text (ASCII, ending in ``}``, holding ``seq`` and ``prev``) as one sealed line (with its
    newline), and its MAC: the writer's fast path, which formats request lines itself."""
    mac = _mac(key, body)
    return body[:-1] + b',"mac":"' + mac.encode("ascii") + b'"}\n', mac


def head_text(key: bytes, seq: int, mac: str) -> str:
    """The content of ``audit.head`` for the last line written (``seq``, ``mac``)."""
    sig = hmac.digest(key, _HEAD_CONTEXT + f"{seq}:{mac}".encode("ascii"), "sha256").hex()
    return json.dumps({"seq": seq, "mac": mac, "head_mac": sig}) + "\n"


def read_head(files: AuditFiles, key: bytes) -> tuple[int, str] | None:
    """(seq, mac) from ``audit.head`` when it exists and verifies; None when absent; AuditError when forged."""
    raw = _read_private(files.head, "the audit head")
    if raw is None:
        return None
    try:
        data = json.loads(raw)
        seq, mac, sig = int(data["seq"]), str(data["mac"]), str(data["head_mac"])
    except (ValueError, KeyError, TypeError):
        raise AuditError(f"{files.head} is damaged", "cordon audit verify shows what else changed") from None
    expected = hmac.digest(key, _HEAD_CONTEXT + f"{seq}:{mac}".encode("ascii"), "sha256").hex()
    if not hmac.compare_digest(sig, expected):
        raise AuditError(f"{files.head} does not verify (changed outside cordon)",
                         "cordon audit verify shows what else changed")
    return seq, mac


def last_entry(path: Path) -> tuple[int, str] | None:
    """(seq, mac) of the last complete line of ``path`` that parses, or None (no such line, or no file)."""
    try:
        with open(path, "rb") as handle:
            size = handle.seek(0, os.SEEK_END)
            block = min(size, 1 << 16)
            handle.seek(size - block)
            tail = handle.read(block)
    except FileNotFoundError:
        return None
    for line in reversed(tail.split(b"\n")):
        match = _MAC_TAIL.search(line)
        if match is None:
            continue
        try:
            return int(json.loads(line)["seq"]), match.group(1).decode("ascii")
        except (ValueError, KeyError, TypeError):
            continue
    return None


# -- reading ----------------------------------------------------------------------------------------------------


def log_files(files: AuditFiles) -> list[Path]:
    """The log files that exist, oldest first (``audit.log.N`` … ``audit.log.1``, ``audit.log``)."""
    rotated: list[tuple[int, Path]] = []
    if files.state_dir.is_dir():
        for path in files.state_dir.iterdir():
            suffix = path.name[len(LOG_NAME) + 1 :]
            if path.name.startswith(LOG_NAME + ".") and suffix.isdigit():
                rotated.append((int(suffix), path))
    ordered = [path for _, path in sorted(rotated, reverse=True)]
    if files.log.exists():
        ordered.append(files.log)
    return ordered


@dataclass(frozen=True, slots=True)
class Line:
    """One line of a log file: where it is, its raw bytes and (when it parses) its entry."""

    path: Path
    number: int
    raw: bytes
    entry: dict[str, Any] | None


def _lines(path: Path) -> Iterator[Line]:
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return
    with handle:
        for number, raw in enumerate(handle, start=1):
            raw = raw.rstrip(b"\n")
            if not raw:
                continue
            try:
                entry = json.loads(raw)
            except ValueError:
                entry = None
            yield Line(path, number, raw, entry if isinstance(entry, dict) else None)


def read_entries(files: AuditFiles) -> Iterator[dict[str, Any]]:
    """Every entry that parses, oldest first (unverified: :func:`verify` checks them)."""
    for path in log_files(files):
        for line in _lines(path):
            if line.entry is not None:
                yield line.entry


# -- verifying --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: ``kind`` is edited | deleted | inserted | reordered | damaged | head; ``where`` names the
    file and line (or the head)."""

    kind: str
    where: str
    message: str


@dataclass(slots=True)
class Report:
    """What :func:`verify` found."""

    files: list[Path] = field(default_factory=list)
    lines: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_mac: str = ""  # the MAC the chain ends with: note it elsewhere to prove later lines came after it
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _where(line: Line) -> str:
    seq = line.entry.get("seq") if line.entry else None
    return f"{line.path.name} line {line.number}" + (f" (seq {seq})" if isinstance(seq, int) else "")


def _mac_ok(key: bytes, raw: bytes) -> str | None:
    """The line's MAC when it verifies, else None."""
    match = _MAC_TAIL.search(raw)
    if match is None:
        return None
    body = raw[: match.start()] + b"}"
    expected = _mac(key, body)
    claimed = match.group(1).decode("ascii")
    return claimed if hmac.compare_digest(claimed, expected) else None


def verify(files: AuditFiles, key: bytes | None = None) -> Report:
    """Check every line of every log file and the head; the report lists each problem found.

    A line whose MAC does not verify was edited (or, when a genuine line with its ``seq`` follows, inserted);
    a ``seq`` that goes back is a moved or copied line; ``seq`` numbers missing from every file are deleted
    lines (at the end too, by the head); a line that is not an audit line at all is damaged.
    """
    report = Report(files=log_files(files))
    if key is None:
        key = load_key(files)
    if key is None:
        if report.files:
            report.problems.append(Problem("damaged", str(files.key), f"the audit key {files.key} is missing, so "
                                           "no line can be verified"))
        return report
    lines = [line for path in report.files for line in _lines(path)]
    macs = [_mac_ok(key, line.raw) if line.entry is not None else None for line in lines]
    genuine = {line.entry["seq"] for line, mac in zip(lines, macs, strict=True)
               if mac is not None and line.entry is not None and isinstance(line.entry.get("seq"), int)}
    last_seq: int | None = None
    last_mac = ""
    first_line = True
    damaged = 0  # damaged lines since the last good one (a line cut short by a crash takes a seq with it)
    suspect: tuple[int, int, str] | None = None  # the last line with a bad MAC: (problem index, seq, its MAC)
    for line, mac in zip(lines, macs, strict=True):
        report.lines += 1
        entry = line.entry
        seq = entry.get("seq") if entry is not None else None
        if entry is None or not isinstance(seq, int) or not isinstance(entry.get("prev"), str):
            report.problems.append(Problem("damaged", _where(line), f"{_where(line)} is not an audit line "
                                           "(edited, or cut short)"))
            damaged += 1
            continue
        if mac is None:
            claimed = _MAC_TAIL.search(line.raw)
            in_place = (last_seq is None or seq == last_seq + 1) and seq not in genuine
            report.problems.append(Problem(
                "edited" if in_place else "inserted", _where(line),
                f"{_where(line)} was " + ("edited after cordon wrote it" if in_place else
                                          "not written by cordon (inserted)") + ": its MAC does not verify"))
            if in_place and claimed is not None:
                suspect = (len(report.problems) - 1, seq, claimed.group(1).decode("ascii"))
            first_line = False
            continue
        if suspect is not None and suspect[1] == seq - 1 and (last_seq is None or suspect[1] == last_seq + 1):
            last_seq, last_mac = suspect[1], suspect[2]  # an edited line keeps its place in the chain
        suspect = None
        if first_line:
            first_line = False
            report.first_seq = seq
            if seq != 1 and entry.get("kind") != "file":
                report.problems.append(Problem("deleted", _where(line), f"the lines before {_where(line)} were "
                                               "deleted (the oldest file does not start with a file record)"))
            elif seq != 1:
                report.notes.append(f"lines before seq {seq} were rotated away (keep_files)")
        elif last_seq is not None and seq <= last_seq:
            report.problems.append(Problem("reordered", _where(line), f"{_where(line)} is out of order: it comes "
                                           f"after seq {last_seq} (moved or copied there)"))
            continue
        elif last_seq is not None and seq > last_seq + 1:
            missing = [n for n in range(last_seq + 1, seq) if n not in genuine]  # the others come later: moved
            if len(missing) > damaged:
                span = f"seq {missing[0]}" if len(missing) == 1 else f"seq {missing[0]}–{missing[-1]}"
                report.problems.append(Problem("deleted", _where(line), f"{len(missing)} line(s) ({span}) "
                                               f"were deleted before {_where(line)}"))
        elif entry["prev"] != last_mac:
            report.problems.append(Problem("inserted", _where(line), f"{_where(line)} does not follow the line "
                                           "before it (a line before it was replaced)"))
        damaged = 0
        last_seq, last_mac = seq, mac
    report.last_seq = last_seq
    report.last_mac = last_mac
    try:
        head = read_head(files, key)
    except AuditError as exc:
        report.problems.append(Problem("head", str(files.head), exc.message))
        return report
    if head is None:
        if report.files:  # the proxy writes it with its first lines: gone means deleted
            report.problems.append(Problem("head", str(files.head), f"{files.head} is missing (deleted?), so "
                                           f"lines deleted at the end of {files.log.name} cannot be ruled out"))
    elif last_seq is None or head[0] > last_seq:
        first_missing = (last_seq or 0) + 1
        span = f"seq {first_missing}" if head[0] == first_missing else f"seq {first_missing}–{head[0]}"
        report.problems.append(Problem("deleted", files.log.name, f"{head[0] - (last_seq or 0)} line(s) ({span}) "
                                       f"were deleted at the end of {files.log.name}"))
    elif head[0] == last_seq and head[1] != last_mac:
        report.problems.append(Problem("edited", files.log.name, f"the last line of {files.log.name} is not the "
                                       "one cordon wrote last (replaced)"))
    return report
