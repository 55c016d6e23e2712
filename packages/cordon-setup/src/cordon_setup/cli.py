"""Command line of cordon-setup (placeholder until the package issue lands)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: main is not built yet\n")
    return 1


def setup_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: setup_main is not built yet\n")
    return 1


def integration_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: integration_main is not built yet\n")
    return 1


def env_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: env_main is not built yet\n")
    return 1


def run_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: run_main is not built yet\n")
    return 1


def service_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    sys.stderr.write("cordon-setup: service_main is not built yet\n")
    return 1
