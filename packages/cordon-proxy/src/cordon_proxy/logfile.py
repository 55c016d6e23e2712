"""One place for a scope's proxy log: ``cordon start --log-file PATH`` and ``cordon logs [-f] [-n N]``.

The service and ``cordon run``'s proxy log to ``<state dir>/proxy.log``; ``cordon start --log-file PATH``
logs wherever it is told and records that path in the scope's ``scope.json``, so ``cordon logs`` always shows
the log of the proxy that was started last. The file is 0600 and appended to; a log over 10 MiB is moved to
``<name>.1`` when the proxy starts. The log holds what the proxy's logger writes (never a secret or a token)
and the ``cordon: …`` lines of a failed start.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from cordon_config.argparsing import CordonArgumentParser as _Parser

__all__ = ["LOGS_EPILOG", "Tee", "add_logs_arguments", "logs_main", "open_log", "tail_lines"]

LOGS_EPILOG = """examples:
  cordon logs                           the last 20 lines of this scope's proxy log
  cordon logs -f                        follow it (Ctrl-C stops)
  cordon logs -n 200 --scope user
  cordon logs --path                    where the log is
"""


class Tee:
    """A text stream writing to ``first`` and ``second`` (stderr and the log file); errors of either are
    ignored, so a closed terminal never stops the proxy."""

    def __init__(self, first: TextIO, second: TextIO) -> None:
        self.first, self.second = first, second

    def write(self, text: str) -> int:
        for stream in (self.first, self.second):
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass
        return len(text)

    def flush(self) -> None:
        for stream in (self.first, self.second):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self.first.fileno()


def open_log(path: Path) -> TextIO:
    """The log file as a line-buffered text stream (0600, appended; see :func:`cordon_config.files.open_log_file`)."""
    from cordon_config.files import open_log_file

    fd = open_log_file(path)
    return open(fd, "a", encoding="utf-8", errors="replace", buffering=1)


def same_file(stream: TextIO, log: TextIO) -> bool:
    """True when ``stream`` already writes to the log file (``cordon run`` and launchd point stderr at it)."""
    try:
        a, b = os.fstat(stream.fileno()), os.fstat(log.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def tail_lines(path: Path, count: int) -> tuple[list[str], int]:
    """The last ``count`` lines of ``path`` and the offset reading stopped at (reads only the end)."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        block, data = 65536, b""
        position = end
        while position > 0 and data.count(b"\n") <= count:
            step = min(block, position)
            position -= step
            handle.seek(position)
            data = handle.read(step) + data
    lines = data.decode("utf-8", "replace").splitlines()
    return (lines[-count:] if count else []), end


def follow(path: Path, offset: int, out: TextIO, *, interval: float = 0.25) -> None:
    """Print what is appended to ``path`` from ``offset`` on, forever; a rotated or truncated file is read
    from its start."""
    identity = _identity(path)
    while True:
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < offset or _identity(path) != identity:
                    offset, identity = 0, _identity(path)
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = b""
        if chunk:
            offset += len(chunk)
            out.write(chunk.decode("utf-8", "replace"))
            out.flush()
        time.sleep(interval)


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        info = os.stat(path)
    except OSError:
        return None
    return info.st_dev, info.st_ino


def add_logs_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cordon logs``."""
    from cordon_config.scope import add_scope_arguments

    add_scope_arguments(parser)
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    parser.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="print the last N lines (default 20)")
    parser.add_argument("--path", action="store_true", help="print the log file's path and nothing else")


def build_logs_parser(prog: str = "cordon logs") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Show the scope's proxy log (the service's, `cordon run`'s proxy's, or "
                     "the file of the last `cordon start --log-file`).", epilog=LOGS_EPILOG,
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_logs_arguments(parser)
    return parser


def logs_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon logs [-f] [-n N] [--path]``."""
    args = build_logs_parser(prog or "cordon logs").parse_args(list(sys.argv[1:] if argv is None else argv))
    from cordon_config.scope import ScopeError, scope_from_args
    from cordon_config.scopes import scope_log

    if args.lines < 0:
        sys.stderr.write("cordon: -n must not be negative\n")
        return 2
    try:
        paths = scope_from_args(args)
    except ScopeError as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return 2
    log = scope_log(paths)
    if args.path:
        print(log)
        return 0
    try:
        lines, offset = tail_lines(log, args.lines)
    except FileNotFoundError:
        sys.stderr.write(f"cordon: no proxy log for this scope yet ({log})\n")
        sys.stderr.write("hint: `cordon run`, `cordon service install` and `cordon start --log-file PATH` write "
                         "one; `cordon start` alone logs to its terminal\n")
        return 1
    except OSError as exc:
        sys.stderr.write(f"cordon: cannot read {log}: {exc.strerror}\n")
        return 1
    try:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()
        if args.follow:
            follow(log, offset, sys.stdout)
    except KeyboardInterrupt:
        return 0  # the way to stop -f
    return 0
