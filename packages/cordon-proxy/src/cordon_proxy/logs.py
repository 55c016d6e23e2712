"""Logs to stderr: one line per request (text or JSON), plus start/stop and debug/trace connection events.

A request line holds time, level, route, token name, method, host, path (never the query), status, bytes and
duration (JSON adds the audit decision, request body bytes and how often the key was scrubbed). Header values, query strings and bodies are never logged, at any level.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from typing import TextIO

from cordon_proxy.core.commands import RequestRecord
from cordon_proxy.core.errors import one_line

__all__ = ["LEVELS", "Logger", "utc_now", "utc_text"]

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "error": 40}


_second: list[object] = [-1, ""]  # the last whole second formatted, and its text (one strftime per second)


def utc_now() -> str:
    """The current UTC time as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (one strftime per second)."""
    return utc_text(time.time())


def utc_text(t: float) -> str:
    """The epoch time ``t`` as ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (one strftime per second)."""
    whole = int(t)
    if _second[0] != whole:
        _second[0], _second[1] = whole, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{_second[1]}.{int((t - whole) * 1000):03d}Z"


class Logger:
    """A tiny leveled logger writing whole lines to ``stream``."""

    def __init__(self, level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
        self.threshold = LEVELS[level]
        self.json = fmt == "json"
        self.stream = stream if stream is not None else sys.stderr
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._pending: list[str] = []

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def batch_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Lines logged on ``loop``'s thread are written together once per loop iteration (one write call for
        every request finished in that iteration, not one each); ``None`` writes what is pending and ends that.
        """
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else 0
        self.flush()

    def flush(self) -> None:
        """Write the lines buffered by :meth:`batch_on` now."""
        if not self._pending:
            return
        lines, self._pending = self._pending, []
        self._emit("\n".join(lines) + "\n")

    def _emit(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _write(self, line: str) -> None:
        loop = self._loop
        if loop is not None and threading.get_ident() == self._loop_thread and not loop.is_closed():
            self._pending.append(line)
            if len(self._pending) == 1:
                loop.call_soon(self.flush)
            return
        self._emit(line + "\n")

    def log(self, level: str, message: str, **fields: object) -> None:
        """One event line (start, stop, warnings, connection events)."""
        if not self.enabled(level):
            return
        if self.json:
            self._write(json.dumps({"time": utc_now(), "level": level, "message": message, **fields}))
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
            self._write(f"{utc_now()} {level.upper():5} {one_line(message, 500)}{extra}")

    def request(self, record: RequestRecord, duration: float) -> None:
        """The one line for a finished request."""
        if record.host == "cordon" and record.path == "/health" and record.status == 200:
            level = "debug"  # every `cordon status`, `wait` and agent hook asks: not worth an INFO line each
        else:
            level = "info" if record.status and record.status < 500 and not record.scrubbed else "warn"
        if not self.enabled(level):
            return
        ms = round(duration * 1000, 1)
        if self.json:
            self._write(
                json.dumps(
                    {
                        "time": utc_now(),
                        "level": level,
                        "route": record.route,
                        "token": record.token,
                        "method": record.method,
                        "host": record.host,
                        "path": record.path,
                        "status": record.status,
                        "bytes": record.bytes,
                        "duration_ms": ms,
                        "error": record.error,
                        "decision": record.decision,
                        "bytes_up": record.bytes_up,
                        "scrubbed": record.scrubbed,
                    }
                )
            )
            return
        status = record.status or "-"
        # one_line() collapses runs of spaces anyway: no padding after the level keeps its fast path
        line = (
            f"{utc_now()} {level.upper()} {record.method} {record.host}{record.path} {status} {record.bytes}B {ms}ms"
            f" route={record.route or '-'} token={record.token or '-'}"
        )
        if record.error:
            line += f" error={record.error}"
        if record.scrubbed:
            line += f" scrubbed={record.scrubbed} (the key was masked in, or cut from, the response)"
        self._write(one_line(line, 1000))
