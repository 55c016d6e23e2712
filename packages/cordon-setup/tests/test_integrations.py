"""Setup/disable semantics beyond the golden cases: user edits are respected, re-runs keep the original."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_setup.base import revoke_token, token_value
from cordon_setup.integrations import IntegrationError, disable, installed, load_manifest, plan_disable
from cordon_setup.plan import read_bytes
from cordon_setup.rotate import on_token_rotated, rewrite_integrations
from cordon_setup.setup_flow import run_setup
from cordon_setup.targets import claude_code


def _env(tmp_path: Path) -> dict[str, str]:
    home = os.environ["HOME"]
    return {"HOME": home, "XDG_CONFIG_HOME": f"{home}/.config", "PATH": os.environ.get("PATH", "")}


def _setup(tmp_path: Path, integration: str, scope: str = "project"):
    project = tmp_path / "project"
    project.mkdir(exist_ok=True)
    environ = _env(tmp_path)
    paths = resolve_scope(scope, None, env=environ, cwd=project)
    outcome = run_setup(
        paths, integration, environ=environ, cwd=project, progress=lambda _: None, cordon_cmd="cordon"
    )
    return paths, project, outcome


def test_user_changed_key_is_left_alone_and_reported_rest_removed(tmp_path):
    dotenv = tmp_path / "project" / ".codex" / ".env"
    dotenv.parent.mkdir(parents=True)
    dotenv.write_text("# mine\nFOO=1\n")
    paths, project, _ = _setup(tmp_path, "codex")
    text = dotenv.read_text()
    dotenv.write_text(
        text.replace("NO_PROXY='localhost,127.0.0.1,::1'", "NO_PROXY=localhost,.corp.test") + "BAR=2\n"
    )
    report = disable(paths, "codex", revoke=revoke_token)
    assert report.left_alone == [f"{dotenv}: NO_PROXY (changed since setup)"]
    assert (
        dotenv.read_text()
        == "# mine\nFOO=1\n# cordon: proxy and CA settings (remove with: cordon integration "
        "disable codex)\nNO_PROXY=localhost,.corp.test\nBAR=2\n"
    )
    assert any("kept the backup" in note for note in report.notes)
    assert dotenv.with_name(".env.cordon.bak").read_text() == "# mine\nFOO=1\n"
    # config.toml was created by setup and untouched since: removed, and .codex kept (it is not empty)
    assert not (project / ".codex" / "config.toml").exists()
    assert installed(paths) == []


def test_other_content_added_since_setup_is_kept(tmp_path):
    paths, project, _ = _setup(tmp_path, "claude-code")
    settings = project / ".claude" / "settings.local.json"
    data = json.loads(settings.read_text())
    data["model"] = "sonnet"
    data["env"]["MINE"] = "x"
    settings.write_text(json.dumps(data, indent=2) + "\n")
    skill = project / ".claude" / "skills" / "cordon" / "SKILL.md"
    skill.write_text(skill.read_text() + "\nmy note\n")
    report = disable(paths, "claude-code", revoke=revoke_token)
    assert json.loads(settings.read_text()) == {"env": {"MINE": "x"}, "model": "sonnet"}
    assert skill.exists() and report.left_alone == [f"{skill} (edited since setup)"]


def test_rerun_keeps_the_original_previous_values_and_new_port_rewrites(tmp_path):
    config = tmp_path / "project" / ".codex" / "config.toml"
    config.parent.mkdir(parents=True)
    original = b'[shell_environment_policy.set]\nHTTPS_PROXY = "http://corp.test:3128"  # office\n'
    config.write_bytes(original)
    paths, _, _ = _setup(tmp_path, "codex")
    text = paths.config_path.read_text()
    port = int(text.split("listen = ")[1].split()[0])
    paths.config_path.write_text(text.replace(f"listen = {port}", f"listen = {port + 1}"))
    _, _, again = _setup(tmp_path, "codex")
    assert again.changed and f"127.0.0.1:{port + 1}" in config.read_text()
    manifest = load_manifest(paths, "codex")
    toml_record = next(r for r in manifest["files"] if r["path"] == str(config))
    previous = {tuple(e["key"]): e["previous"] for e in toml_record["keys"]}
    assert previous[("shell_environment_policy", "set", "HTTPS_PROXY")] == '"http://corp.test:3128"'
    disable(paths, "codex", revoke=revoke_token)
    assert config.read_bytes() == original


def test_rotate_rewrites_the_integration_files(tmp_path):
    paths, project, _ = _setup(tmp_path, "codex")
    dotenv = project / ".codex" / ".env"
    old = token_value(paths, "codex")
    assert old and old in dotenv.read_text()
    from cordon_config.tokens import TokenStore

    new = TokenStore.open(paths.tokens_path).rotate("codex")
    lines = on_token_rotated(paths, "codex")
    assert lines == [f"rewrote {dotenv}", f"rewrote {project / '.codex' / 'config.toml'}"]
    assert new in dotenv.read_text() and old not in dotenv.read_text()
    assert rewrite_integrations(paths, "default") == []
    # still lossless afterwards
    disable(paths, "codex", revoke=revoke_token)
    assert not (project / ".codex").exists()


def test_dry_run_writes_nothing(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    home = Path(os.environ["HOME"])
    before = sorted(home.rglob("*")) + sorted(project.rglob("*"))
    environ = _env(tmp_path)
    paths = resolve_scope(None, None, env=environ, cwd=project)
    outcome = run_setup(paths, "codex", environ=environ, cwd=project, dry_run=True, progress=lambda _: None)
    assert outcome.changed and outcome.applied == []
    assert sorted(home.rglob("*")) + sorted(project.rglob("*")) == before
    assert [c.path.name for c in outcome.plan.changes] == [".env", "config.toml"]


def test_broken_agent_file_stops_setup_before_anything_is_written(tmp_path):
    settings = tmp_path / "project" / ".claude" / "settings.local.json"
    settings.parent.mkdir(parents=True)
    settings.write_text("{ not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        _setup(tmp_path, "claude-code")
    assert not (tmp_path / "project" / "cordon.toml").exists()


def test_disable_unknown_or_not_set_up(tmp_path):
    paths = resolve_scope(None, None, env=_env(tmp_path), cwd=tmp_path)
    with pytest.raises(IntegrationError, match="not set up"):
        plan_disable(paths, "codex")
    with pytest.raises(IntegrationError, match="unknown integration"):
        plan_disable(paths, "cursor")


def _run_hook(command: str, tmp_path: Path, status_code: int) -> subprocess.CompletedProcess[str]:
    bindir = tmp_path / f"bin{status_code}"
    bindir.mkdir()
    stand_in = bindir / "cordon"
    stand_in.write_text(f'#!/bin/sh\necho "$@" > {bindir}/args\nexit {status_code}\n')
    stand_in.chmod(0o755)
    env = {"PATH": f"{bindir}:/usr/bin:/bin"}
    return subprocess.run(["bash", "-c", command], capture_output=True, text=True, env=env, timeout=10)


def test_claude_hook_blocks_with_a_clear_message_when_the_proxy_is_down(tmp_path):
    paths, project, _ = _setup(tmp_path, "claude-code")
    command = claude_code.hook_command(
        type("C", (), {"scope_flag": f"--config {paths.config_path}", "cordon_cmd": "cordon"})()
    )
    settings = json.loads(read_bytes(project / ".claude" / "settings.local.json") or b"{}")
    assert settings["hooks"]["UserPromptSubmit"][0]["hooks"][0]["command"] == command
    down = _run_hook(command, tmp_path, 1)
    assert down.returncode == 2
    assert (
        down.stderr.startswith("cordon: the proxy of this scope is not running") and "cordon start --config" in down.stderr
    )
    up = _run_hook(command, tmp_path, 0)
    assert up.returncode == 0 and up.stderr == ""
    assert (tmp_path / "bin0" / "args").read_text().split() == [
        "status",
        "--quiet",
        "--config",
        str(paths.config_path),
    ]


def test_declining_the_prompt_writes_no_agent_file(tmp_path):
    dotenv = tmp_path / "project" / ".codex" / ".env"
    dotenv.parent.mkdir(parents=True)
    dotenv.write_text("A=1\n")
    project = tmp_path / "project"
    environ = _env(tmp_path)
    paths = resolve_scope(None, None, env=environ, cwd=project)
    asked = []
    outcome = run_setup(
        paths,
        "codex",
        environ=environ,
        cwd=project,
        progress=lambda _: None,
        confirm=lambda plan, masks: asked.append([c.path.name for c in plan.changes]) or False,
    )
    assert outcome.declined and asked == [[".env", "config.toml"]]
    assert dotenv.read_text() == "A=1\n" and not (project / ".codex" / "config.toml").exists()
    assert installed(paths) == []


def test_git_projects_are_told_to_ignore_the_token_files(tmp_path):
    (tmp_path / "project" / ".git").mkdir(parents=True)
    _, _, outcome = _setup(tmp_path, "codex")
    assert any(".gitignore" in step for step in outcome.next_steps)


def test_stale_files_for_doctor(tmp_path):
    from cordon_setup.rotate import stale_files

    paths, _, _ = _setup(tmp_path, "codex")
    assert stale_files(paths, "codex") == []
    text = paths.config_path.read_text()
    paths.config_path.write_text(text.replace("listen = ", "listen = 1", 1))
    assert [c.path.name for c in stale_files(paths, "codex")] == [".env", "config.toml"]
    assert stale_files(paths, "claude-code") == []


def test_a_moved_cordon_replaces_the_old_hook(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    environ = _env(tmp_path)
    paths = resolve_scope(None, None, env=environ, cwd=project)
    for cmd in ("/old/bin/cordon", "/new/bin/cordon"):
        run_setup(paths, "claude-code", environ=environ, cwd=project, progress=lambda _: None, cordon_cmd=cmd)
    settings = json.loads((project / ".claude" / "settings.local.json").read_text())
    commands = [e["hooks"][0]["command"] for e in settings["hooks"]["UserPromptSubmit"]]
    assert len(commands) == 1 and commands[0].startswith("/new/bin/cordon status --quiet")
    disable(paths, "claude-code", revoke=revoke_token)
    assert not (project / ".claude").exists()
