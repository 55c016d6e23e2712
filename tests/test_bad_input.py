"""Every command answers bad input with one `cordon:` line and exit 2: never a traceback, never a usage dump."""

from __future__ import annotations

import os
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


CONFIG_READERS = [
    ["route", "list"],
    ["route", "show", "api"],
    ["route", "add", "--name", "a", "--host", "a.test", "--auth-type", "header", "--header-name", "x-k",
     "--source", "env", "--var", "V"],
    ["route", "edit", "api", "--host", "b.test"],
    ["route", "remove", "api", "--yes"],
    ["secret", "check"],
    ["env"],
    ["start"],
    ["ca", "generate"],
    ["ca", "show"],
    ["ca", "bundle"],
    ["ca", "path"],
    ["setup"],
    ["doctor"],
]


@pytest.mark.parametrize("argv", CONFIG_READERS, ids=[" ".join(a[:2]) for a in CONFIG_READERS])
def test_a_config_that_is_not_utf8_is_an_error_not_a_traceback(argv: list[str], tmp_path) -> None:
    config = tmp_path / "cordon.toml"
    original = b'listen = 6790\n# caf\xe9 (latin-1)\n'
    config.write_bytes(original)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"))
    result = subprocess.run(
        [sys.executable, "-m", "cordon", *argv[:1], *argv[1:], "-c", str(config)],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, cwd=tmp_path, env=env, check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert "UTF-8" in result.stderr + result.stdout  # says what is wrong (doctor in its report, others on stderr)
    assert config.read_bytes() == original  # nothing lost, nothing rewritten
