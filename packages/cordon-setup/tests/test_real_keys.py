"""Real provider keys in the agent files setup edits (SECURITY.md §E rule 1): never left beside the file in a
backup, never printed; moved into the keyring on a terminal (a real pty here), the exact commands otherwise."""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cordon_config import load_config
from cordon_config.approvals import check_approved
from cordon_config.providers import DUMMY_KEY
from cordon_config.scope import resolve_scope

OPENAI_KEY = "sk-proj-real-openai-canary-0123456789abcdef"
ANTHROPIC_KEY = "sk-ant-real-anthropic-canary-0123456789"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    return path


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The environment of `cordon setup` in these tests: a throwaway HOME and a file keyring (never the user's)."""
    full = dict(os.environ)
    full.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "home" / ".config"),
                PYTHON_KEYRING_BACKEND="cordon_testing.config.FileKeyring",
                CORDON_TEST_KEYRING_FILE=str(tmp_path / "keyring.json"), NO_COLOR="1")
    return full


def setup(project: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cordon_setup", "setup", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)


def state_dir(project: Path, env: dict[str, str]) -> Path:
    return resolve_scope(None, None, env=env, cwd=project).state_dir


def files_holding(root: Path, value: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]


def test_without_a_tty_setup_warns_with_the_commands_and_keeps_the_backup_out_of_reach(project, env) -> None:
    codex = project / ".codex"
    codex.mkdir()
    (codex / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\nMINE=1\n")
    (codex / ".env").chmod(0o644)
    done = setup(project, env, "codex")
    assert done.returncode == 0, done.stderr
    assert OPENAI_KEY not in done.stdout + done.stderr
    assert f"warning: {codex / '.env'} holds a real OPENAI_API_KEY (not cordon's dummy), which the agent can read" \
        in done.stderr
    assert ("  1. cordon route add --name openai --host api.openai.com --auth-type header --header-name "
            "Authorization --scheme Bearer --source keyring --account openai") in done.stderr
    assert f"  2. cordon secret set openai    (paste the key from {codex / '.env'})" in done.stderr
    assert f"  3. in {codex / '.env'}, set OPENAI_API_KEY={DUMMY_KEY}" in done.stderr
    # the key stays only where the user put it: no copy beside it, the backup in the state dir (0600)
    assert files_holding(project, OPENAI_KEY) == [codex / ".env"]
    backups = list((state_dir(project, env) / "backups" / "codex").iterdir())
    assert len(backups) == 1 and OPENAI_KEY in backups[0].read_text()
    assert stat.S_IMODE(backups[0].stat().st_mode) == 0o600
    assert f"(original saved as {backups[0]})" in done.stdout


def test_claude_settings_key_is_replaced_and_its_original_kept_in_the_state_dir(project, env) -> None:
    settings = project / ".claude" / "settings.local.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"env": {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}}, indent=2) + "\n")
    settings.chmod(0o644)
    dry = setup(project, env, "claude-code", "--dry-run")
    assert ANTHROPIC_KEY not in dry.stdout + dry.stderr and "<real ANTHROPIC_API_KEY>" in dry.stdout
    done = setup(project, env, "claude-code")
    assert done.returncode == 0, done.stderr
    assert ANTHROPIC_KEY not in done.stdout + done.stderr
    assert files_holding(project, ANTHROPIC_KEY) == []  # not in the settings, not in a backup beside them
    assert json.loads(settings.read_text())["env"]["ANTHROPIC_API_KEY"] == DUMMY_KEY
    (backup,) = (state_dir(project, env) / "backups" / "claude-code").iterdir()
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600 and ANTHROPIC_KEY in backup.read_text()
    assert f"  2. cordon secret set anthropic    (paste the key from the original kept in {backup})" in done.stderr


def test_a_key_in_a_backup_beside_the_file_moves_to_the_state_dir(project, env) -> None:
    settings = project / ".claude" / "settings.local.json"
    settings.parent.mkdir()
    settings.write_text(json.dumps({"env": {"ANTHROPIC_API_KEY": DUMMY_KEY}}) + "\n")
    assert setup(project, env, "claude-code").returncode == 0
    beside = settings.with_name(settings.name + ".cordon.bak")
    beside.write_text(json.dumps({"env": {"ANTHROPIC_API_KEY": ANTHROPIC_KEY}}) + "\n")  # as cordon 0.1 left it
    manifest = state_dir(project, env) / "integrations" / "claude-code.json"
    data = json.loads(manifest.read_text())
    data["files"][0]["backup"] = str(beside)
    manifest.write_text(json.dumps(data))
    done = setup(project, env, "claude-code")
    assert done.returncode == 0, done.stderr
    assert files_holding(project, ANTHROPIC_KEY) == []
    assert files_holding(state_dir(project, env) / "backups", ANTHROPIC_KEY)


def _run_on_a_pty(argv: list[str], cwd: Path, env: dict[str, str], answers: list[bytes]) -> tuple[int, str]:
    """Run ``argv`` on a real pseudo-terminal (``os.openpty``), answering each ``[Y/n]`` prompt in turn;
    returns (exit code, everything it wrote to the terminal)."""
    primary, secondary = os.openpty()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=secondary, stdout=secondary, stderr=secondary,
                            start_new_session=True)
    os.close(secondary)
    output = b""
    pending = list(answers)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([primary], [], [], 0.5)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
            while pending and output.count(b"[Y/n] ") > len(answers) - len(pending):
                os.write(primary, pending.pop(0))
    finally:
        os.close(primary)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode, output.decode("utf-8", errors="replace")


def test_on_a_terminal_setup_moves_the_key_into_the_keyring(project, env, tmp_path: Path) -> None:
    codex = project / ".codex"
    codex.mkdir()
    (codex / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\nMINE=1\n")
    code, out = _run_on_a_pty([sys.executable, "-m", "cordon_setup", "setup", "codex"], project, env,
                              [b"y\n", b"y\n"])
    assert code == 0, out
    assert OPENAI_KEY not in out  # not in the prompt, not in the diff shown before writing
    assert "holds a real OPENAI_API_KEY, which the agent can read. Move it into the keyring (cordon/openai, " \
        "route openai, which setup adds and approves)" in out
    assert "<real OPENAI_API_KEY>" in out and "Change these files?" in out
    assert json.loads((tmp_path / "keyring.json").read_text()) == {"cordon\0openai": OPENAI_KEY}
    assert f"OPENAI_API_KEY='{DUMMY_KEY}'" in (codex / ".env").read_text()
    assert files_holding(project, OPENAI_KEY) == []
    paths = resolve_scope(None, None, env=env, cwd=project)
    config = load_config(paths.config_path)
    assert [(r.name, r.host) for r in config.routes] == [("openai", "api.openai.com")]
    assert check_approved(config, paths) == []  # the route setup added on the user's yes is approved
    # a second run keeps the dummy, and disabling gives the user back the file as it was
    assert setup(project, env, "codex").returncode == 0
    assert f"OPENAI_API_KEY='{DUMMY_KEY}'" in (codex / ".env").read_text()
    done = subprocess.run([sys.executable, "-m", "cordon_setup", "integration", "disable", "codex"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (codex / ".env").read_text() == f"OPENAI_API_KEY={OPENAI_KEY}\nMINE=1\n"


def test_on_a_terminal_no_leaves_the_key_and_warns(project, env, tmp_path: Path) -> None:
    codex = project / ".codex"
    codex.mkdir()
    (codex / ".env").write_text(f"OPENAI_API_KEY={OPENAI_KEY}\n")
    code, out = _run_on_a_pty([sys.executable, "-m", "cordon_setup", "setup", "codex"], project, env,
                              [b"n\n", b"y\n"])
    assert code == 0, out
    assert OPENAI_KEY not in out and "cordon secret set openai" in out
    assert not (tmp_path / "keyring.json").exists()
    assert (codex / ".env").read_text().startswith(f"OPENAI_API_KEY={OPENAI_KEY}\n")
