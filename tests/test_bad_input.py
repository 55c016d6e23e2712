"""Every command answers bad input with one `cordon:` line and exit 2: never a traceback, never a usage dump."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cordon.catalogue import KNOWN_COMMANDS

GARBAGE = {
    "route": ["add", "--no-such-flag"],
    "secret": ["frobnicate"],
    "token": ["frobnicate"],
    "integration": ["frobnicate"],
    "service": ["frobnicate"],
    "env": ["--format", "xml"],
    "wait": ["--timeout", "soon"],
    "start": ["--log-level", "loud"],
    "ca": ["frobnicate"],
}


@pytest.mark.parametrize("command", [c.name for c in KNOWN_COMMANDS])
def test_garbage_is_one_line_and_exit_2(command: str, tmp_path) -> None:
    argv = GARBAGE.get(command, ["--no-such-flag"])
    result = subprocess.run(
        [sys.executable, "-m", "cordon", command, *argv],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path, check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cordon: "), result.stderr
    assert result.stdout == ""
