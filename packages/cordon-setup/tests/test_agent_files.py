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


# (integration, setup arguments, the agent's directory relative to the project "P" or home "H")
LINKED_DIRS = [
    ("codex", [], "P/.codex"),
    ("claude-code", [], "P/.claude"),
    ("gemini-cli", [], "P/.gemini"),
    ("gemini-cli", [], "P/.gemini/skills"),
    ("opencode", [], "P/.opencode"),
    ("codex", ["--scope", "user"], "H/.codex"),
    ("claude-code", ["--scope", "user"], "H/.claude"),
    ("gemini-cli", ["--scope", "user"], "H/.gemini"),
    ("opencode", ["--scope", "user"], "H/.config/opencode"),
    ("hermes", [], "H/.hermes"),
]


def _where(spec: str, project: Path) -> Path:
    root = project if spec.startswith("P/") else Path(os.environ["HOME"])
    return root / spec[2:]


@pytest.mark.parametrize(("name", "args", "linked"), LINKED_DIRS,
                         ids=[f"{c[0]}:{c[2]}" for c in LINKED_DIRS])
def test_setup_refuses_a_symlinked_agent_directory(project: Path, tmp_path: Path, name: str, args: list[str],
                                                   linked: str, capsys) -> None:
    """`ln -s /elsewhere .codex; cordon setup codex -y` must not write the token, the config or a backup into
    /elsewhere (nor a directory below the agent's, nor a user-level one such as ~/.claude)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".env").write_text(OUTSIDE)
    link = _where(linked, project)
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(elsewhere, target_is_directory=True)
    before = files_under(elsewhere)
    home_before = files_under(Path(os.environ["HOME"]))
    assert setup_main([name, *args, "--yes"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == (f"cordon: {link} is a symlink to {elsewhere}; cordon does not read or write through "
                        "symlinks there, so nothing was written"), lines
    assert lines[1] == (f"hint: {link} must be a real directory, not a link: use the directory it points to "
                        f"({elsewhere}) in its place (move it there, or point the agent at it), then run the "
                        "command again")
    assert files_under(elsewhere) == before  # no token, config, skill or backup written through the link
    assert files_under(Path(os.environ["HOME"])) == home_before
    assert not (project / "cordon.toml").exists()  # stopped before the base setup too
    assert link.is_symlink()


@pytest.mark.parametrize(("name", "args", "linked"), LINKED_DIRS,
                         ids=[f"{c[0]}:{c[2]}" for c in LINKED_DIRS])
def test_disable_refuses_an_agent_directory_swapped_for_a_symlink(project: Path, tmp_path: Path, name: str,
                                                                  args: list[str], linked: str, capsys) -> None:
    """After setup, the agent replaces its directory with a link to a copy elsewhere: `integration disable`
    must not restore, delete or rmdir anything through it."""
    assert setup_main([name, *args, "--yes"]) == 0, capsys.readouterr().err
    real = _where(linked, project)
    elsewhere = tmp_path / "elsewhere"
    real.rename(elsewhere)
    real.symlink_to(elsewhere, target_is_directory=True)
    before = files_under(elsewhere)
    capsys.readouterr()
    assert integration_main(["disable", name, *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"cordon: {real} is a symlink to {elsewhere}; cordon does not read or write through "), err
    assert files_under(elsewhere) == before
    assert real.is_symlink()


def test_a_directory_linked_between_plan_and_apply_stops_every_write(project: Path, tmp_path: Path) -> None:
    """The plan was made with a real .codex; the agent swaps it for a link before the files are written:
    applying refuses before writing any of them."""
    from cordon_config.files import SymlinkRefused
    from cordon_setup.apply import apply_changes
    from cordon_setup.plan import FileChange

    codex, elsewhere = project / ".codex", tmp_path / "elsewhere"
    codex.mkdir()
    changes = [FileChange(project / "AGENTS.md", None, b"first\n", within=project),
               FileChange(codex / ".env", None, b"TOKEN=x\n", within=project)]
    codex.rmdir()
    elsewhere.mkdir()
    codex.symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(SymlinkRefused):
        apply_changes(changes)
    assert not (project / "AGENTS.md").exists() and list(elsewhere.iterdir()) == []
