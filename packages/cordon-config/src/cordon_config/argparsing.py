"""The argument parser every cordon tool uses: bad usage is one ``cordon:`` line and exit 2, no usage dump."""

from __future__ import annotations

import argparse
from typing import NoReturn

USAGE_EXIT = 2


class CordonArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors read ``cordon: <what is wrong> (see <prog> --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT, f"cordon: {message} (see {self.prog} --help)\n")
