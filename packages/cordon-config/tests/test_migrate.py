"""Configs written for the tool cordon follows: read with a one-line note each, and `cordon config migrate`."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cordon_config import ConfigError, load_config
from cordon_config.cli import config_main, main
from cordon_config.migrate import backup_path, migrate_config
from cordon_config.model import HeaderAuth

HEAD = """\
# the team's proxy config
listen = 6790   # our port

[tls]
enabled = true
ca_cert_path = "/tmp/cordon-test/ca-cert.pem"
ca_key_path = "/tmp/cordon-test/ca-key.pem"
"""

PROVIDERS = """
[[secrets.providers]]
type = "1password"
op_path = "/opt/1password/op"   # pinned op

"""

ROUTES = """
[[routes]]
name = "openai"
[routes.match]
host = "api.openai.com"
[routes.auth]
type = "bearer"   # OpenAI wants a bearer token
[routes.auth.secret]
source = "1password"
vault = "Dev"
item = "OpenAI"
field = "credential"

# Anthropic
[[routes]]
name = "anthropic"
[routes.match]
host = "api.anthropic.com"
[routes.auth]
type = "api_key"
[routes.auth.secret]
source = "keyring"
account = "anthropic"

[[routes]]
name = "gh"
[routes.match]
host = "api.github.com"
[routes.auth]
type = "bearer"
scheme = "token"
[routes.auth.secret]
source = "env"
var = "GH_TOKEN"
"""

LEGACY = HEAD + PROVIDERS + ROUTES


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "cordon.toml"
    path.write_text(LEGACY)
    path.chmod(0o640)
    return path


def test_legacy_forms_are_read_as_what_they_mean(config: Path) -> None:
    loaded = load_config(config)
    auth = {r.name: r.auth for r in loaded.routes}
    assert auth == {"openai": HeaderAuth("Authorization", "Bearer"), "anthropic": HeaderAuth("x-api-key", None),
                    "gh": HeaderAuth("Authorization", "token")}
    assert loaded.op_path == "/opt/1password/op"
    assert loaded.notes == (
        f'{config}:9: [[secrets.providers]] means [secrets] op_path = "/opt/1password/op" '
        "(`cordon config migrate` rewrites it)",
        f'{config}:19: route openai: auth type "bearer" means type = "header", header_name = "Authorization", '
        'scheme = "Bearer" (`cordon config migrate` rewrites it)',
        f'{config}:32: route anthropic: auth type "api_key" means type = "header", header_name = "x-api-key" '
        "(`cordon config migrate` rewrites it)",
        f'{config}:42: route gh: auth type "bearer" means type = "header", header_name = "Authorization", '
        'scheme = "token" (`cordon config migrate` rewrites it)',
    )


def test_migrate_rewrites_them_losslessly(config: Path) -> None:
    before = load_config(config)
    changes = migrate_config(config)
    assert changes == [
        'route openai: auth type "bearer" → type = "header", header_name = "Authorization", scheme = "Bearer"',
        'route anthropic: auth type "api_key" → type = "header", header_name = "x-api-key"',
        'route gh: auth type "bearer" → type = "header", header_name = "Authorization", scheme = "token"',
        '[[secrets.providers]] → [secrets] op_path = "/opt/1password/op"',
    ]
    text = config.read_text()
    expected = (HEAD + '\n[secrets]\nop_path = "/opt/1password/op"   # pinned op\n' + ROUTES
                .replace('type = "bearer"   # OpenAI wants a bearer token',
                         'type = "header"   # OpenAI wants a bearer token\nheader_name = "Authorization"\n'
                         'scheme = "Bearer"')
                .replace('type = "api_key"', 'type = "header"\nheader_name = "x-api-key"')
                .replace('type = "bearer"\nscheme = "token"', 'type = "header"\nscheme = "token"\n'
                         'header_name = "Authorization"'))
    assert text == expected
    after = load_config(config)
    assert after.notes == () and after.routes == before.routes and after.op_path == before.op_path
    assert backup_path(config).read_text() == LEGACY  # the file exactly as it was
    assert stat.S_IMODE(backup_path(config).stat().st_mode) == 0o640
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert migrate_config(config) == []  # nothing left


def test_dry_run_writes_nothing(config: Path) -> None:
    assert len(migrate_config(config, dry_run=True)) == 4
    assert config.read_text() == LEGACY and not backup_path(config).exists()


def test_providers_alongside_a_secrets_table(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    path.write_text(HEAD + '\n[secrets]\n# no op_path yet\n\n[[secrets.providers]]\nname = "1password"\n'
                    'path = "/usr/bin/op"\n')
    assert migrate_config(path) == ['[[secrets.providers]] → [secrets] op_path = "/usr/bin/op"']
    assert load_config(path).op_path == "/usr/bin/op" and "providers" not in path.read_text()


def test_a_provider_with_no_meaning_is_an_error_not_a_silent_drop(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    path.write_text(HEAD + '\n[[secrets.providers]]\ntype = "vault"\naddress = "https://vault.local"\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "provider 'vault' has no meaning in cordon" in str(info.value)
    with pytest.raises(ConfigError):
        migrate_config(path)
    assert "vault" in path.read_text()


def test_unknown_key_on_a_legacy_auth_type(tmp_path: Path) -> None:
    path = tmp_path / "cordon.toml"
    path.write_text(LEGACY.replace('type = "api_key"\n', 'type = "api_key"\nprefix = "Key"\n'))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert 'unknown key "prefix" for auth type "api_key"' in str(info.value)


def test_cli(config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(config.parent)
    assert config_main(["migrate", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.endswith("dry run: nothing was written\n") and config.read_text() == LEGACY
    assert main(["config", "migrate", "--json", "--dry-run"], prog="cordon-config") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["written"] is False and len(data["changes"]) == 4
    assert config_main(["migrate", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert f"rewrote {config} (as it was: {backup_path(config)})" in out
    assert config_main(["migrate"]) == 0
    assert capsys.readouterr().out == f"nothing to migrate: {config} uses cordon's own forms\n"


def test_cli_on_a_broken_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cordon.toml"
    path.write_text("listen = [\n")
    assert config_main(["migrate", "-c", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cordon: ") and "not valid TOML" in err and "Traceback" not in err
    assert os.path.exists(path) and not backup_path(path).exists()


def test_an_approved_legacy_config_stays_approved_after_migration(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from cordon_config.approvals import check_approved
    from cordon_config.cli import route_main
    from cordon_config.scope import resolve_scope

    path = tmp_path / "cordon.toml"
    path.write_text(HEAD + ROUTES.split("# Anthropic")[0])  # the openai route, type = "bearer"
    paths = resolve_scope(None, path, env=os.environ, cwd=tmp_path)
    assert route_main(["approve", "--all", "--yes", "-c", str(path)]) == 0
    assert check_approved(load_config(path), paths) == []
    assert migrate_config(path)  # rewritten ...
    assert check_approved(load_config(path), paths) == []  # ... and what it means was approved already
    capsys.readouterr()
