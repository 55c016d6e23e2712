"""Command line of cordon-doctor (placeholder until the package issue lands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-doctor: main is not built yet\n")
    return 1


def doctor_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-doctor: doctor_main is not built yet\n")
    return 1


def demo_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-doctor: demo_main is not built yet\n")
    return 1
