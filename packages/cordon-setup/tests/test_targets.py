"""Hermes, OpenClaw, Gemini CLI, OpenCode and Aider through `cordon setup` / `cordon integration disable`:
own scopes and their errors, OpenClaw's PATH check and gateway service, the next steps each prints.

What each writes, byte for byte, is in test_golden.py; the real clients are driven in tests/agents.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cordon_config.providers import DUMMY_KEY
from cordon_config.scope import resolve_scope
from cordon_setup.cli import integration_main, setup_main
from cordon_setup.integrations import INTEGRATIONS, own_config

#: ``openclaw`` with a user service manager: ``gateway status`` reports the service running once installed;
#: every call and the CA variables it saw are logged beside it.
OPENCLAW_WITH_MANAGER = """\
#!/bin/sh
dir=$(dirname "$0")
printf '%s|%s|%s\\n' "$*" "${NODE_EXTRA_CA_CERTS:-}" "${NODE_USE_SYSTEM_CA:-}" >> "$dir/calls.log"
case "$1 $2" in
  "gateway status")
    if [ -f "$dir/installed" ]; then
      echo '{"service": {"loaded": true, "runtime": {"status": "running"}}}'
    else
      echo '{"service": {"loaded": false, "runtime": {"status": "stopped"}}}'
    fi ;;
  "gateway install") touch "$dir/installed"; echo '{"action": "install", "ok": true}' ;;
  *) exit 2 ;;
esac
"""

OPENCLAW_NO_MANAGER = """\
#!/bin/sh
printf '%s\\n' "$*" >> "$(dirname "$0")/calls.log"
echo '{"service": {"inspectionReason": "service-manager-unavailable", "loaded": false}}'
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "proj"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


def _stub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    (directory / "openclaw").write_text(script)
    (directory / "openclaw").chmod(0o755)
    monkeypatch.setenv("PATH", f"{directory}:{os.environ.get('PATH', '')}")
    return directory


def _home() -> Path:
    return Path(os.environ["HOME"])


def test_all_seven_integrations_are_known() -> None:
    assert list(INTEGRATIONS) == ["codex", "claude-code", "hermes", "openclaw", "gemini-cli", "opencode", "aider"]


def test_hermes_is_its_own_scope(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert setup_main(["hermes", "--yes"]) == 0
    out = capsys.readouterr().out
    config = _home() / ".hermes" / "cordon.toml"
    assert config.is_file() and not (project / "cordon.toml").exists()
    env = (_home() / ".hermes" / ".env").read_text()
    assert f"ANTHROPIC_API_KEY='{DUMMY_KEY}'" in env and "HTTPS_PROXY='http://" in env
    assert (_home() / ".hermes" / "skills" / "devops" / "cordon" / "SKILL.md").is_file()
    assert f"cordon route add --config {config} --name anthropic --host api.anthropic.com" in out
    assert f"cordon secret set --config {config} anthropic" in out
    paths = resolve_scope(None, config, env=os.environ, cwd=project)
    assert (paths.state_dir / "integrations" / "hermes.json").is_file()  # state beside the other scopes
    assert integration_main(["disable", "hermes"]) == 0  # no flag needed: the scope is fixed
    assert "hermes integration disabled" in capsys.readouterr().out
    assert not (_home() / ".hermes" / ".env").exists()


@pytest.mark.parametrize("main", [setup_main, integration_main])
def test_hermes_refuses_scope_flags(project: Path, capsys: pytest.CaptureFixture[str], main) -> None:  # type: ignore[no-untyped-def]
    argv = ["hermes", "--scope", "user"] if main is setup_main else ["disable", "hermes", "--scope", "user"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("cordon: hermes is a scope of its own (") and "drop --scope" in err
    assert "Traceback" not in err
    argv = ["hermes", "--config", "elsewhere.toml"] if main is setup_main else ["disable", "hermes", "-c", "x.toml"]
    assert main(argv) == 2
    assert "hermes is a scope of its own: its config is" in capsys.readouterr().err
    assert not (_home() / ".hermes").exists()


def test_hermes_accepts_its_own_config_flag(project: Path) -> None:
    assert setup_main(["hermes", "--yes", "--config", str(_home() / ".hermes" / "cordon.toml")]) == 0


def test_hermes_home_elsewhere_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("HERMES_HOME", str(project / "profile"))
    assert setup_main(["hermes"]) == 1
    err = capsys.readouterr().err
    assert f"cordon: HERMES_HOME points at {project / 'profile'}" in err and "hint: unset HERMES_HOME" in err
    assert not (_home() / ".hermes").exists()
    monkeypatch.setenv("HERMES_HOME", str(_home() / ".hermes"))  # the default, spelt out: fine
    assert setup_main(["hermes", "--yes"]) == 0


def test_openclaw_without_openclaw_on_path_touches_nothing(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    before = sorted(p for p in tmp_path.rglob("*"))
    assert setup_main(["openclaw"]) == 1
    err = capsys.readouterr().err
    assert "cordon: openclaw is not on PATH; nothing was changed" in err and "npm install -g openclaw" in err
    assert sorted(p for p in tmp_path.rglob("*")) == before


def test_openclaw_state_dir_elsewhere_is_refused(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    _stub(tmp_path, monkeypatch, OPENCLAW_NO_MANAGER)
    monkeypatch.setenv("OPENCLAW_STATE_DIR", str(tmp_path / "state"))
    assert setup_main(["openclaw"]) == 1
    assert "cordon: OPENCLAW_STATE_DIR points at" in capsys.readouterr().err
    assert not (_home() / ".openclaw").exists()


def test_openclaw_without_service_manager_says_what_to_run(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                           tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    stub = _stub(tmp_path, monkeypatch, OPENCLAW_NO_MANAGER)
    assert setup_main(["openclaw", "--yes"]) == 0
    out = capsys.readouterr().out
    config = _home() / ".openclaw" / "cordon.toml"
    assert "no user service manager here" in out
    assert f"cordon run --config {config} --token openclaw -- openclaw gateway run" in out
    assert (stub / "calls.log").read_text().splitlines() == ["gateway status --no-probe --json"]
    data = json.loads((_home() / ".openclaw" / "openclaw.json").read_text())
    assert data["proxy"]["enabled"] is True and data["proxy"]["proxyUrl"].startswith("http://")
    assert "@127.0.0.1:" in data["proxy"]["proxyUrl"]


def test_openclaw_gateway_reinstalled_with_the_ca_then_without(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    stub = _stub(tmp_path, monkeypatch, OPENCLAW_WITH_MANAGER)
    monkeypatch.setenv("NODE_EXTRA_CA_CERTS", "/the/users/own.pem")  # replaced for the gateway by cordon's CA
    assert setup_main(["openclaw", "--yes"]) == 0
    out = capsys.readouterr().out
    assert "reinstalled the OpenClaw gateway service with cordon's CA in its environment; " \
           "openclaw gateway status: running" in out
    paths = resolve_scope(None, own_config("openclaw", _home()), env=os.environ, cwd=project)
    calls = [line.split("|") for line in (stub / "calls.log").read_text().splitlines()]
    assert [c[0] for c in calls] == ["gateway status --no-probe --json", "gateway install --force --json",
                                     "gateway status --no-probe --json"]
    assert all(c[1] == str(paths.ca_cert) and c[2] == "1" for c in calls)
    (stub / "calls.log").unlink()
    assert integration_main(["disable", "openclaw"]) == 0
    out = capsys.readouterr().out
    assert "reinstalled the OpenClaw gateway service without cordon's CA" in out
    calls = [line.split("|") for line in (stub / "calls.log").read_text().splitlines()]
    assert "gateway install --force --json" in [c[0] for c in calls]
    assert all(c[1] == "/the/users/own.pem" and c[2] == "" for c in calls)  # the user's own CA stays
    assert not (_home() / ".openclaw" / "openclaw.json").exists()


@pytest.mark.parametrize(
    ("name", "written", "run_line"),
    [
        ("gemini-cli", ".gemini/.env", "cordon run --token gemini-cli -- gemini"),
        ("opencode", "opencode.json", "cordon run --token opencode -- opencode"),
        ("aider", ".env", "aider    # Aider loads"),
    ],
)
def test_project_scope_targets_say_how_to_start_the_tool(project: Path, capsys: pytest.CaptureFixture[str],
                                                         name: str, written: str, run_line: str) -> None:
    assert setup_main([name, "--yes"]) == 0
    out = capsys.readouterr().out
    assert f"created {project / written}" in out and run_line in out
    assert DUMMY_KEY in (project / written).read_text()
    assert integration_main(["disable", name]) == 0
    assert not (project / written).exists()


def test_opencode_jsonc_is_not_edited(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (project / "opencode.jsonc").write_text('{\n  // mine\n  "model": "x"\n}\n')
    assert setup_main(["opencode", "--yes"]) == 1
    err = capsys.readouterr().err
    assert "opencode.jsonc exists and cordon edits only plain JSON" in err and "apiKey" in err
    assert not (project / "opencode.json").exists() and not (project / "cordon.toml").exists()


def test_openclaw_json5_file_stops_setup_before_anything_is_written(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    _stub(tmp_path, monkeypatch, OPENCLAW_NO_MANAGER)
    state = _home() / ".openclaw"
    state.mkdir()
    (state / "openclaw.json").write_text("{ gateway: { port: 18789 }, }\n")  # JSON5, as OpenClaw accepts
    assert setup_main(["openclaw", "--yes"]) == 2
    assert "openclaw.json is not valid JSON" in capsys.readouterr().err
    assert sorted(p.name for p in state.iterdir()) == ["openclaw.json"]
