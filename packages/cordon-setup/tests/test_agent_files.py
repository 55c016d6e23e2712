"""Agent files cannot be turned against the user (SECURITY.md §E rule 7), tried as the agent would.

The agent writes its workspace: it plants symlinks at the files `cordon setup` edits (or at their backups), or
leaves them world-readable. Each test does that with real files and real symlinks, runs the real command, and
checks what ended up where: nothing followed, nothing written, the token never readable by others.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from cordon_config.cli import route_main
from cordon_setup.cli import integration_main, setup_main

OUTSIDE = "AWS_SECRET_ACCESS_KEY=outside-the-workspace-0123456789\n"


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A file outside the workspace that the sandboxed agent cannot read."""
    path = tmp_path / "private" / "credentials"
    path.parent.mkdir()
    path.write_text(OUTSIDE)
    return path


def files_under(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file() and not p.is_symlink()}


def assert_nothing_leaked(project: Path) -> None:
    for path, data in files_under(project).items():
        assert b"outside-the-workspace" not in data, f"{path} holds the content of the link's target"


@pytest.mark.parametrize("name", [".env", "config.toml", ".env.cordon.bak", "config.toml.cordon.bak"])
def test_setup_stops_at_a_symlink_and_writes_nothing(project: Path, outside: Path, name: str, capsys) -> None:
    codex = project / ".codex"
    codex.mkdir()
    (codex / ".env").write_text("EXISTING=1\n")  # so there is something to back up
    (codex / "config.toml").write_text('model = "o3"\n')
    link = codex / name
    if link.exists():
        link.unlink()
    link.symlink_to(outside)
    before = files_under(project)
    assert setup_main(["codex"]) == 1
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert lines[0] == (f"cordon: {link} is a symlink to {outside}; cordon does not read or write through symlinks "
                        "there, so nothing was written"), captured.err
    assert lines[1].startswith("hint: ") and len(lines) == 2
    assert files_under(project) == before  # nothing written, not even cordon.toml
    assert link.is_symlink() and outside.read_text() == OUTSIDE
    assert_nothing_leaked(project)


def test_disable_stops_at_a_symlink_planted_after_setup(project: Path, outside: Path, capsys) -> None:
    assert setup_main(["codex", "--yes"]) == 0
    env = project / ".codex" / ".env"
    env.unlink()
    env.symlink_to(outside)
    capsys.readouterr()
    assert integration_main(["disable", "codex"]) == 1
    err = capsys.readouterr().err
    assert f"cordon: {env} is a symlink to {outside}" in err
    assert env.is_symlink() and outside.read_text() == OUTSIDE
    assert (project / ".codex" / "config.toml").exists()  # nothing undone half-way
    assert_nothing_leaked(project)


def test_a_fifo_at_an_agent_file_is_refused_without_hanging(project: Path) -> None:
    codex = project / ".codex"
    codex.mkdir()
    os.mkfifo(codex / ".env")
    done = subprocess.run([sys.executable, "-m", "cordon_setup", "setup", "codex"], cwd=project, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL, env=os.environ.copy())
    assert done.returncode == 1 and "not a regular file" in done.stderr
    assert not (project / "cordon.toml").exists()


def test_a_symlinked_cordon_toml_is_never_replaced_by_a_copy(project: Path, tmp_path: Path, capsys) -> None:
    assert setup_main([]) == 0
    real = tmp_path / "private" / "cordon.toml"
    real.parent.mkdir()
    (project / "cordon.toml").rename(real)
    (project / "cordon.toml").symlink_to(real)
    before = real.read_text()
    capsys.readouterr()
    assert route_main(["add", "--name", "a", "--host", "a.test", "--header-name", "x-k"]) == 1
    err = capsys.readouterr().err
    assert f"is a symlink to {real}" in err and "hint: " in err
    assert (project / "cordon.toml").is_symlink() and real.read_text() == before
    assert not (project / "cordon.toml.bak").exists()


@pytest.mark.parametrize("integration,files", [
    ("codex", [".codex/.env", ".codex/config.toml"]),
    ("claude-code", [".claude/settings.local.json"]),
])
def test_files_holding_the_token_end_0600_whatever_their_mode(project: Path, integration: str,
                                                               files: list[str], capsys) -> None:
    for name in files:
        path = project / name
        path.parent.mkdir(exist_ok=True)
        path.write_text("{}\n" if name.endswith(".json") else "# mine\n")
        path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        assert setup_main([integration, "--yes"]) == 0
    finally:
        os.umask(old_umask)
    out = capsys.readouterr().out
    for name in files:
        path = project / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert f"updated {path} (mode 0644 -> 0600: it holds the proxy token)" in out
        backup = path.with_name(path.name + ".cordon.bak")
        assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    # loosened again by hand: setup makes them private again, and says so
    for name in files:
        (project / name).chmod(0o644)
    assert setup_main([integration, "--yes"]) == 0
    out = capsys.readouterr().out
    for name in files:
        assert stat.S_IMODE((project / name).stat().st_mode) == 0o600
        assert f"made {project / name} private (mode 0644 -> 0600: it holds the proxy token)" in out


def test_an_existing_backup_is_never_overwritten(project: Path, capsys) -> None:
    codex = project / ".codex"
    codex.mkdir()
    (codex / ".env").write_text("MINE=1\n")
    (codex / ".env.cordon.bak").write_text("the very first original\n")
    assert setup_main(["codex", "--yes"]) == 0
    assert (codex / ".env.cordon.bak").read_text() == "the very first original\n"
