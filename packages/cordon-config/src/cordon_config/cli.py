"""Command line of cordon-config (placeholder until the package issue lands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-config: main is not built yet\n")
    return 1


def route_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-config: route_main is not built yet\n")
    return 1


def secret_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-config: secret_main is not built yet\n")
    return 1


def token_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-config: token_main is not built yet\n")
    return 1
