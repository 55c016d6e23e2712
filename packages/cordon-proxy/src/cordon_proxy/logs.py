"""Logs to stderr: one line per request (text or JSON), plus start/stop and debug/trace connection events.

A request line holds time, level, route, token name, method, host, path (never the query), status, bytes and
duration. Header values, query strings and bodies are never logged, at any level.
"""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from cordon_proxy.core.commands import RequestRecord
from cordon_proxy.core.errors import one_line

__all__ = ["LEVELS", "Logger"]

LEVELS = {"trace": 5, "debug": 10, "info": 20, "warn": 30, "error": 40}


def _now() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"


class Logger:
    """A tiny leveled logger writing whole lines to ``stream``."""

    def __init__(self, level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
        self.threshold = LEVELS[level]
        self.json = fmt == "json"
        self.stream = stream if stream is not None else sys.stderr

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self.threshold

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def log(self, level: str, message: str, **fields: object) -> None:
        """One event line (start, stop, warnings, connection events)."""
        if not self.enabled(level):
            return
        if self.json:
            self._write(json.dumps({"time": _now(), "level": level, "message": message, **fields}))
        else:
            extra = "".join(f" {k}={v}" for k, v in fields.items() if v is not None)
            self._write(f"{_now()} {level.upper():5} {one_line(message, 500)}{extra}")

    def request(self, record: RequestRecord, duration: float) -> None:
        """The one line for a finished request."""
        level = "info" if record.status and record.status < 500 else "warn"
        if not self.enabled(level):
            return
        ms = round(duration * 1000, 1)
        if self.json:
            self._write(
                json.dumps(
                    {
                        "time": _now(),
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
                    }
                )
            )
            return
        status = record.status or "-"
        line = (
            f"{_now()} {level.upper():5} {record.method} {record.host}{record.path} {status} {record.bytes}B {ms}ms"
            f" route={record.route or '-'} token={record.token or '-'}"
        )
        if record.error:
            line += f" error={record.error}"
        self._write(one_line(line, 1000))
