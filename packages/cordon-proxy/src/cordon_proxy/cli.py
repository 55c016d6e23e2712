"""Command line of cordon-proxy (placeholder until the package issue lands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-proxy: main is not built yet\n")
    return 1


def start_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-proxy: start_main is not built yet\n")
    return 1


def status_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-proxy: status_main is not built yet\n")
    return 1


def wait_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-proxy: wait_main is not built yet\n")
    return 1
