"""Golden files for every integration × scope, fresh and over pre-existing user files (with comments).

Each case runs the real setup flow under a temporary HOME and compares every file written (agent files,
cordon.toml, the manifest) to ``tests/golden/<case>/``, with machine-specific parts normalised. Then
``integration disable`` must give back the original bytes (or remove the files cordon created).
Regenerate after an intended change with ``CORDON_UPDATE_GOLDEN=1 uv run pytest packages/cordon-setup``.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

import pytest
from cordon_config import load_config
from cordon_config.identity import key_path
from cordon_config.scope import resolve_scope
from cordon_setup.base import revoke_token, token_value
from cordon_setup.integrations import disable, manifest_path, own_config
from cordon_setup.setup_flow import run_setup

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CORDON_UPDATE_GOLDEN") == "1"

CODEX_ENV = """\
# local development settings (not secrets)
export RUST_LOG=info
HTTPS_PROXY=http://corp-proxy.test:3128   # the office proxy
"""

CODEX_TOML = """\
# Codex configuration
model = "gpt-5-codex"   # default model
approval_policy = "on-request"

[shell_environment_policy]
inherit = "core"   # keep PATH, HOME, ...
ignore_default_excludes = false

[mcp_servers.docs]
command = "npx"
args = ["-y", "docs-mcp"]
"""

CLAUDE_SETTINGS = """\
{
  "permissions": {
    "allow": [
      "Bash(npm run test:*)"
    ],
    "deny": []
  },
  "env": {
    "DEBUG": "1"
  },
  "hooks": {
    "UserPromptSubmit": [
      {
        "hooks": [
          {
            "type": "command",
            "command": "echo \\"prompt at $(date)\\" >> ~/prompts.log"
          }
        ]
      }
    ]
  },
  "model": "opus"
}
"""

HERMES_ENV = """\
# Hermes Agent environment
HERMES_INFERENCE_PROVIDER=anthropic
HERMES_LOG_LEVEL=info
"""

OPENCLAW_JSON = """\
{
    "gateway": {
        "port": 18789,
        "bind": "loopback"
    },
    "agents": {
        "defaults": {
            "model": "anthropic/claude-sonnet-4-6"
        }
    }
}
"""

OPENCLAW_ENV = """\
# OpenClaw global environment
TELEGRAM_BOT_TOKEN=not-a-real-token
"""

GEMINI_ENV = """\
# Gemini CLI project settings
GOOGLE_CLOUD_LOCATION=europe-west4
"""

OPENCODE_JSON = """\
{
  "$schema": "https://opencode.ai/config.json",
  "model": "anthropic/claude-sonnet-4-6",
  "provider": {
    "openai": {
      "options": {
        "timeout": 600000
      }
    }
  }
}
"""

AIDER_ENV = """\
# the app's own settings
DATABASE_URL=postgres://localhost/app
AIDER_DARK_MODE=true
"""

# case name -> (integration, scope, CODEX_HOME relative to HOME or None, {path template: seed text});
# scope "own": the integration's own scope (Hermes, OpenClaw)
CASES: dict[str, tuple[str, str, str | None, dict[str, str]]] = {
    "codex-project-fresh": ("codex", "project", None, {}),
    "codex-project-existing": (
        "codex",
        "project",
        None,
        {"<PROJECT>/.codex/.env": CODEX_ENV, "<PROJECT>/.codex/config.toml": CODEX_TOML},
    ),
    "codex-user-fresh": ("codex", "user", None, {}),
    "codex-user-existing": (
        "codex",
        "user",
        "codex-home",
        {"<HOME>/codex-home/.env": CODEX_ENV, "<HOME>/codex-home/config.toml": CODEX_TOML},
    ),
    "claude-code-project-fresh": ("claude-code", "project", None, {}),
    "claude-code-project-existing": (
        "claude-code",
        "project",
        None,
        {"<PROJECT>/.claude/settings.local.json": CLAUDE_SETTINGS},
    ),
    "claude-code-user-fresh": ("claude-code", "user", None, {}),
    "claude-code-user-existing": (
        "claude-code",
        "user",
        None,
        {"<HOME>/.claude/settings.json": CLAUDE_SETTINGS},
    ),
    "hermes-fresh": ("hermes", "own", None, {}),
    "hermes-existing": ("hermes", "own", None, {"<HOME>/.hermes/.env": HERMES_ENV}),
    "openclaw-fresh": ("openclaw", "own", None, {}),
    "openclaw-existing": (
        "openclaw",
        "own",
        None,
        {"<HOME>/.openclaw/openclaw.json": OPENCLAW_JSON, "<HOME>/.openclaw/.env": OPENCLAW_ENV},
    ),
    "gemini-cli-project-fresh": ("gemini-cli", "project", None, {}),
    "gemini-cli-project-existing": ("gemini-cli", "project", None, {"<PROJECT>/.gemini/.env": GEMINI_ENV}),
    "gemini-cli-user-fresh": ("gemini-cli", "user", None, {}),
    "opencode-project-fresh": ("opencode", "project", None, {}),
    "opencode-project-existing": ("opencode", "project", None, {"<PROJECT>/opencode.json": OPENCODE_JSON}),
    "opencode-user-fresh": ("opencode", "user", None, {}),
    "aider-project-fresh": ("aider", "project", None, {}),
    "aider-project-existing": ("aider", "project", None, {"<PROJECT>/.env": AIDER_ENV}),
    "aider-user-fresh": ("aider", "user", None, {}),
}

#: A stand-in for the ``openclaw`` CLI (setup needs it on PATH and asks it about the gateway service): it
#: reports a machine without a user service manager, as CI is.
OPENCLAW_STUB = """\
#!/bin/sh
printf '%s\\n' "$*" >> "$(dirname "$0")/calls.log"
if [ "$1 $2" = "gateway status" ]; then
  echo '{"service": {"inspectionReason": "service-manager-unavailable", "loaded": false}}'
  exit 0
fi
echo '{"ok": false, "error": "the stand-in installs nothing"}'
exit 1
"""


def openclaw_stub(directory: Path) -> Path:
    """Write the ``openclaw`` stand-in into ``directory`` and return the directory (for PATH)."""
    directory.mkdir(parents=True, exist_ok=True)
    stub = directory / "openclaw"
    stub.write_text(OPENCLAW_STUB)
    stub.chmod(0o755)
    return directory


def _setting(tmp_path: Path, case: str):
    integration, scope, codex_home, seeds = CASES[case]
    home = Path(os.environ["HOME"])
    project = tmp_path / "project"
    project.mkdir()
    environ = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": f"{openclaw_stub(tmp_path / 'bin')}:{os.environ.get('PATH', '')}",
    }
    if codex_home:
        environ["CODEX_HOME"] = str(home / codex_home)
    if scope == "own":
        paths = resolve_scope(None, own_config(integration, home), env=environ, cwd=project)
    else:
        paths = resolve_scope(scope, None, env=environ, cwd=project)
    subst = {"<PROJECT>": str(project), "<HOME>": str(home)}

    def real(template: str) -> Path:
        for key, value in subst.items():
            template = template.replace(key, value)
        return Path(template)

    seeded = {}
    for template, text in seeds.items():
        path = real(template)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(0o640)
        seeded[path] = text.encode()
    return integration, paths, environ, project, home, seeded


def _normalise(
    text: str, *, project: Path, home: Path, namespace: str, port: int, tokens: dict[str, str]
) -> str:
    for name, value in tokens.items():
        text = text.replace(value, f"<TOKEN:{name}>")
    text = text.replace(str(project), "<PROJECT>").replace(str(home), "<HOME>")
    if namespace != "user":
        text = text.replace(namespace, "<NS>")
    text = text.replace(f"127.0.0.1:{port}", "127.0.0.1:<PORT>").replace(
        f"listen = {port} ", "listen = <PORT> "
    )
    text = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?", "<TIME>", text)
    return re.sub(r"\b[0-9a-f]{64}\b", "<SHA256>", text)


def _written(project: Path, home: Path, paths) -> list[Path]:
    """Every file setup wrote, cordon.toml, tokens.toml and the approval record included, except the CA, the
    bundle, the approval key and the identity key (random keys and the machine's trust store: their own tests
    check their content; here only their modes) and the Node hook (test_nodehook.py)."""
    roots = [project, home]
    skip_dirs = {paths.certs_dir, paths.state_dir / "node"}  # the Node hook: a copy of the shipped file
    out = []
    for root in roots:
        for path in sorted(root.rglob("*")):
            if not path.is_file() or any(d in path.parents for d in skip_dirs):
                continue
            if path.name.endswith(".lock") or path.name == "approval.key" or path == key_path(paths):  # random bytes
                continue
            out.append(path)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden_setup_and_lossless_disable(tmp_path: Path, case: str) -> None:
    integration, paths, environ, project, home, seeded = _setting(tmp_path, case)
    outcome = run_setup(
        paths, integration, environ=environ, cwd=project, progress=lambda _: None, cordon_cmd="cordon"
    )
    assert outcome.changed
    tokens = {name: token_value(paths, name) or "" for name in ("default", integration)}
    assert all(tokens.values())
    port = int(re.search(rb"listen = (\d+)", paths.config_path.read_bytes()).group(1))
    config = load_config(paths.config_path)
    assert config.listen == port and config.tls.ca_cert_path == paths.ca_cert and config.routes == ()
    files = _written(project, home, paths)
    expected_dir = GOLDEN / case
    seen = set()
    for path in files:
        if path in seeded and path.read_bytes() == seeded[path]:
            continue  # untouched seed
        rel = _normalise(
            str(path), project=project, home=home, namespace=paths.namespace, port=port, tokens=tokens
        )
        rel = rel.replace("<", "_").replace(">", "_").lstrip("/")
        got = _normalise(
            path.read_text(), project=project, home=home, namespace=paths.namespace, port=port, tokens=tokens
        )
        golden = expected_dir / rel
        seen.add(golden)
        if UPDATE:
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got)
        assert golden.exists(), f"no golden file for {path} ({golden})"
        assert got == golden.read_text(), f"{path} differs from {golden}"
    if not UPDATE:
        stale = {p for p in expected_dir.rglob("*") if p.is_file()} - seen
        assert not stale, f"golden files no longer written: {stale}"
    # no token leaks into anything but the agent files and the manifest; .env never has a CODEX_ name
    for path in files:
        if path.name == ".env":
            assert not re.search(r"^\s*(export\s+)?CODEX_", path.read_text(), re.M)
    # files holding the proxy token end 0600, existing (seeded 0640) ones too; backups are 0600
    for change in outcome.plan.changes:
        mode = stat.S_IMODE(change.path.stat().st_mode)
        if change.path in seeded:
            backup = change.path.with_name(change.path.name + ".cordon.bak")
            assert backup.read_bytes() == seeded[change.path]
            assert stat.S_IMODE(backup.stat().st_mode) == 0o600
        if change.private:
            assert mode == 0o600
        elif change.path in seeded:  # no proxy token in it (opencode.json: the dummy key): it keeps its mode
            assert mode == 0o640
        elif change.path.suffix != ".md":
            assert mode == 0o600
    assert stat.S_IMODE(manifest_path(paths, integration).stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path(paths).stat().st_mode) == 0o600

    # a second run changes nothing
    again = run_setup(
        paths, integration, environ=environ, cwd=project, progress=lambda _: None, cordon_cmd="cordon"
    )
    assert not again.changed and again.applied == []

    report = disable(paths, integration, revoke=revoke_token, environ=environ)
    assert report.left_alone == [] and report.token_revoked
    assert token_value(paths, integration) is None and token_value(paths, "default")
    for path, original in seeded.items():
        assert path.read_bytes() == original, f"{path} not restored byte for byte"
        assert not path.with_name(path.name + ".cordon.bak").exists()
    # the scope's own files stay (the default token in tokens.toml; the approvals of cordon.toml; the record
    # of the scope)
    base = (paths.config_path, paths.tokens_path, paths.state_dir / "approvals.json", paths.state_dir / "scope.json")
    leftovers = [p for p in _written(project, home, paths) if p not in seeded and p not in base]
    assert leftovers == []
    if not seeded:
        assert not (project / ".codex").exists() and not (project / ".claude").exists()
        assert not (home / ".codex").exists() and not (home / ".claude").exists()
