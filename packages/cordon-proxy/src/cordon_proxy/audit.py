"""The proxy's side of the audit log (format, chain and verification: :mod:`cordon_config.audit`).

:class:`AuditLog` writes one sealed line per routed request and per policy decision (records whose
``decision`` the core set). A request only notes its record and the time; the lines of the next FLUSH_EVERY
seconds are formatted, sealed and written together (one ``write``, ``O_APPEND``, the file 0600), so the log
costs a tight loop and one system call per tenth of a second, not work on every request's path; the head
file is rewritten about once a second and at close.
The log is rotated by size with the chain carried across files.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import TypeAlias

from cordon_config.audit import (
    AuditError,
    AuditFiles,
    ensure_key,
    head_text,
    last_entry,
    read_head,
    seal,
    seal_text,
)
from cordon_config.files import atomic_write
from cordon_config.model import AuditConfig
from cordon_config.scope import ScopePaths

from cordon_proxy.core.commands import RequestRecord
from cordon_proxy.logs import Logger, utc_text

__all__ = ["AuditLog", "open_audit"]

#: what happened is noted at once (a timestamp and the record); the lines are formatted, sealed and written
#: together at most FLUSH_EVERY seconds after the first of them (at once past MAX_PENDING of them): one tight
#: loop and one write() for hundreds of requests under load. The head file is rewritten about once a second.
FLUSH_EVERY = 0.1
MAX_PENDING = 1024
HEAD_EVERY = 1.0

Pending: TypeAlias = "tuple[float, RequestRecord | dict[str, object], float]"


class AuditLog:
    """Appends sealed lines to ``<state_dir>/audit.log`` (see the module doc)."""

    def __init__(self, state_dir: Path, scope: str, config: AuditConfig, logger: Logger) -> None:
        self.files = AuditFiles(state_dir)
        self.scope = scope
        self._scope_json = json.dumps(scope)
        self.config = config
        self.logger = logger
        self._key = ensure_key(self.files)
        self._seq, self._mac = self._resume()
        self._fd = -1
        self._size = 0
        self._pending: list[Pending] = []  # (time, record or lifecycle fields, duration), in order
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._head_due = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._failed = False
        self._open()
        if self._size == 0:
            self._enqueue((time.time(), {"kind": "file", "reason": "new" if self._seq == 0 else "continued"}, 0.0))

    def _resume(self) -> tuple[int, str]:
        """Where the chain goes on: the later of the head and the last line of the current file."""
        found = last_entry(self.files.log)
        try:
            head = read_head(self.files, self._key)
        except AuditError as exc:
            self.logger.log("warn", f"audit: {exc.message}; the chain goes on from the last line of the log")
            head = None
        candidates = [entry for entry in (found, head) if entry is not None]
        return max(candidates) if candidates else (0, "")

    def _open(self) -> None:
        path = self.files.log
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        info = os.fstat(self._fd)
        if info.st_mode & 0o077:
            os.fchmod(self._fd, 0o600)
        self._size = info.st_size
        if self._size and not self._ends_with_newline(path):
            os.write(self._fd, b"\n")  # a line cut short by a crash: the next line starts on its own

    @staticmethod
    def _ends_with_newline(path: Path) -> bool:
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) == b"\n"

    def configure(self, config: AuditConfig) -> None:
        """New rotation settings (a reload)."""
        self.config = config

    def batch_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Lines noted on ``loop``'s thread are written in batches (FLUSH_EVERY); None writes what is pending."""
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else 0
        self.flush()

    # -- what happened ----------------------------------------------------------------------------------------
    def request(self, record: RequestRecord, duration: float) -> None:
        """Note a finished routed request or policy decision (the record is not changed after it is logged)."""
        self._enqueue((time.time(), record, duration))

    def event(self, kind: str, **fields: object) -> None:
        """Note a lifecycle event (``start``, ``stop``)."""
        self._enqueue((time.time(), {"kind": kind, **fields}, 0.0))

    def _enqueue(self, item: Pending) -> None:
        pending = self._pending
        pending.append(item)
        loop = self._loop
        if loop is not None and threading.get_ident() == self._loop_thread and not loop.is_closed():
            if len(pending) == 1:
                loop.call_later(FLUSH_EVERY, self.flush)
                self._head_due = True
                if self._head_timer is None:
                    self._head_timer = loop.call_later(HEAD_EVERY, self._write_head_later)
            elif len(pending) >= MAX_PENDING:
                self.flush()
            return
        self.flush()
        self._write_head()

    # -- lines ------------------------------------------------------------------------------------------------
    def _line(self, when: float, what: RequestRecord | dict[str, object], duration: float) -> bytes:
        """The next sealed line. A request line is formatted here rather than by ``json.dumps`` (a third of
        the cost): the host and path come from the client and go through :func:`_js`; the route and token
        names, the method (an HTTP token), the decision and the error code are validated names, and the
        scope is encoded once."""
        self._seq += 1
        if type(what) is dict:
            entry = {"seq": self._seq, "time": utc_text(when), "scope": self.scope, **what, "prev": self._mac}
            line, self._mac = seal(self._key, entry)
            return line
        record = what
        assert isinstance(record, RequestRecord)
        body = (
            f'{{"seq":{self._seq},"time":"{utc_text(when)}","scope":{self._scope_json},"kind":"request",'
            f'"route":{_name(record.route)},"token":{_name(record.token)},"method":{_name(record.method)},'
            f'"host":{_js(record.host)},"path":{_js(record.path)},"status":{int(record.status)},'
            f'"bytes_up":{int(record.bytes_up)},"bytes_down":{int(record.bytes)},'
            f'"duration_ms":{round(duration * 1000, 1)},"decision":{_name(record.decision)},'
            f'"error":{_name(record.error)},"scrubbed":{int(record.scrubbed)},"prev":"{self._mac}"}}'
        )
        line, self._mac = seal_text(self._key, body.encode("ascii"))
        return line

    # -- files ------------------------------------------------------------------------------------------------
    def flush(self) -> None:
        """Seal the pending lines and write them (one write call per file), rotating when the file is full."""
        if not self._pending or self._fd < 0:
            return
        pending, self._pending = self._pending, []
        out: list[bytes] = []
        size = self._size
        limit = self.config.max_file_bytes
        for when, what, duration in pending:
            if size >= limit:
                self._write(out)
                out = [self._rotate(when)]
                size = self._size + len(out[0])
            line = self._line(when, what, duration)
            out.append(line)
            size += len(line)
        self._write(out)

    def _write(self, lines: list[bytes]) -> None:
        if not lines or self._fd < 0:
            return
        data = b"".join(lines)
        try:
            os.write(self._fd, data)
            self._size += len(data)
            self._failed = False
        except OSError as exc:
            if not self._failed:  # once per failure spell, not per line
                self.logger.log("error", f"audit: cannot write {self.files.log}: {exc.strerror or exc}")
            self._failed = True

    def _rotate(self, when: float) -> bytes:
        """``audit.log`` → ``audit.log.1`` → … (files beyond keep_files are deleted); returns the new file's
        first line, a ``file`` line chained to the last line of the old one."""
        try:
            os.close(self._fd)
            self._fd = -1
            files = self.files
            keep = self.config.keep_files
            for index in range(keep, keep + 1000):  # those of a larger keep_files before, too
                try:
                    os.unlink(files.rotated(index))
                except FileNotFoundError:
                    break
            for index in range(keep - 2, 0, -1):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(files.rotated(index), files.rotated(index + 1))
            if keep > 1:
                os.replace(files.log, files.rotated(1))
            else:
                os.unlink(files.log)
            self._open()
        except OSError as exc:
            self.logger.log("error", f"audit: cannot rotate {self.files.log}: {exc.strerror or exc}")
            if self._fd < 0:
                with contextlib.suppress(OSError):
                    self._open()  # go on appending to whatever is there
        return self._line(when, {"kind": "file", "reason": "rotated"}, 0.0)

    def _write_head_later(self) -> None:
        self._head_timer = None
        if self._head_due:
            self.flush()
            self._write_head()

    def _write_head(self) -> None:
        """Replace ``audit.head`` (:func:`cordon_config.files.atomic_write`, not durable: losing the last second
        of it in a crash only weakens the end-of-log check for that second, and an fsync would stall the loop)."""
        self._head_due = False
        try:
            atomic_write(self.files.head, head_text(self._key, self._seq, self._mac), mode=0o600, durable=False)
        except OSError as exc:
            self.logger.log("error", f"audit: cannot write {self.files.head}: {exc.strerror or exc}")

    def close(self) -> None:
        """Write what is pending and the head; close the file."""
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        self._loop = None
        self.flush()
        self._write_head()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def open_audit(paths: ScopePaths, config: AuditConfig, logger: Logger) -> AuditLog:
    """The scope's audit log, opened for writing (its key made when missing); AuditError (one line and the fix)
    when the state dir, the key or the log cannot be used."""
    try:
        return AuditLog(paths.state_dir, paths.namespace, config, logger)
    except OSError as exc:
        raise AuditError(f"cannot open the audit log in {paths.state_dir}: {exc.strerror or exc}",
                         "run cordon as the user who owns the state dir, or set enabled = false under [audit]"
                         ) from None


def _name(value: str | None) -> str:
    """A validated name (route, token, method, decision, error code) as a JSON string, or null."""
    return "null" if value is None else f'"{value}"'


def _js(value: str | None) -> str:
    """``value`` as a JSON string (or null): as it is when it needs no escape (the common case), else through
    ``json.dumps``."""
    if value is None:
        return "null"
    if value.isascii() and value.isprintable() and '"' not in value and "\\" not in value:
        return f'"{value}"'
    return json.dumps(value)
