"""Command line of cordon-ca (placeholder until the package issue lands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-ca: main is not built yet\n")
    return 1


def trust_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-ca: trust_main is not built yet\n")
    return 1


def untrust_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-ca: untrust_main is not built yet\n")
    return 1
