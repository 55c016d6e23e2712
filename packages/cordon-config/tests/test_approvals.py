"""Approvals: what decides where a secret goes counts only as approved, in a MAC'd record in the state dir."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cordon_config import load_config
from cordon_config.approvals import (
    KEY_NAME,
    RECORD_NAME,
    ApprovalError,
    approve,
    check_approved,
    record_change,
    refusal_lines,
    route_item,
)
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_testing.config import route_block

ROUTE = route_block("openai", "api.openai.com", 'source = "env"\nvar = "OPENAI_API_KEY"',
                    auth='type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"')
EXFIL = route_block("exfil", "evil.example", 'source = "env"\nvar = "OPENAI_API_KEY"',
                    auth='type = "header"\nheader_name = "X-Exfil"')


@pytest.fixture
def scope(tmp_path: Path) -> ScopePaths:
    project = tmp_path / "proj"
    project.mkdir()
    env = {"HOME": str(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "home" / ".config")}
    paths = resolve_scope(None, None, env=env, cwd=project)
    write(paths, ROUTE)
    return paths


def write(paths: ScopePaths, body: str, *, head: str = "") -> None:
    paths.config_path.write_text(f"{head}listen = 6790\n\n[tls]\nenabled = true\n"
                                 f'ca_cert_path = "{paths.ca_cert}"\nca_key_path = "{paths.ca_key}"\n\n{body}')


def pending(paths: ScopePaths) -> list[tuple[str, str]]:
    return [(u.item.key, u.reason) for u in check_approved(load_config(paths.config_path), paths)]


def test_a_config_without_record_gets_one_message(scope: ScopePaths) -> None:
    found = check_approved(load_config(scope.config_path), scope)
    assert [(u.item.key, u.reason) for u in found] == [("route:openai", "unrecorded")]
    lines = refusal_lines(found, scope, flag="")
    assert len(lines) == 1
    assert "has no approval record" in lines[0] and "cordon route list" in lines[0]
    assert "cordon route approve --all" in lines[0]


def test_approved_then_a_hand_added_route_is_new(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    assert pending(scope) == []
    write(scope, ROUTE + EXFIL)
    found = check_approved(load_config(scope.config_path), scope)
    assert [(u.item.key, u.reason) for u in found] == [("route:exfil", "new")]
    (line,) = refusal_lines(found, scope, flag="")
    assert line.startswith('route "exfil" is new and not approved (host "evil.example"')
    assert 'auth.header_name "x-exfil"' in line and 'secret.var "OPENAI_API_KEY"' in line
    assert line.endswith("review it, then run: cordon route approve exfil")


def test_a_changed_secret_reference_names_each_field(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    write(scope, ROUTE.replace('source = "env"\nvar = "OPENAI_API_KEY"',
                               'source = "command"\nargv = ["sh", "-c", "cat ~/.ssh/id_ed25519"]'))
    (entry,) = check_approved(load_config(scope.config_path), scope)
    assert entry.reason == "changed"
    assert sorted((c.name, json.dumps(c.before), json.dumps(c.after)) for c in entry.changes) == [
        ("secret.argv", "null", '["sh", "-c", "cat ~/.ssh/id_ed25519"]'),
        ("secret.source", '"env"', '"command"'),
        ("secret.var", '"OPENAI_API_KEY"', "null"),
    ]
    (line,) = refusal_lines([entry], scope, flag=" --config /x/cordon.toml")
    assert 'secret.source "env" -> "command"' in line
    assert line.endswith("cordon route approve --config /x/cordon.toml openai")


@pytest.mark.parametrize("field,value", [
    ("host", 'host = "api.openai.com.evil.example"'),
    ("port", 'host = "api.openai.com"\nport = 8443'),
    ("allow_plain_http", None),
])
def test_every_field_that_routes_counts(scope: ScopePaths, field: str, value: str | None) -> None:
    approve(scope, load_config(scope.config_path))
    if value is None:
        write(scope, ROUTE.replace('name = "openai"\n', 'name = "openai"\nallow_plain_http = true\n'))
    else:
        write(scope, ROUTE.replace('host = "api.openai.com"', value))
    (entry,) = check_approved(load_config(scope.config_path), scope)
    assert [c.name for c in entry.changes] == [field]


def test_comments_order_and_formatting_never_matter(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    scope.config_path.write_text(
        "# rewritten by hand\n[[routes]]\n"
        'auth = { secret = { var = "OPENAI_API_KEY", source = "env" }, scheme = "Bearer", '
        'header_name = "AUTHORIZATION", type = "header" }  # inline now\n'
        'match = { host = "API.OpenAI.com." }\nname = "openai"\n\n'
        f'[tls]\nca_key_path = "{scope.ca_key}"\nca_cert_path = "{scope.ca_cert}"\nenabled = true\n'
    )
    text = scope.config_path.read_text()
    scope.config_path.write_text("listen = 7000\nsecret_ttl = 0\n" + text)
    assert pending(scope) == []


def test_settings_need_approval_only_when_not_cordons_defaults(scope: ScopePaths, tmp_path: Path) -> None:
    approve(scope, load_config(scope.config_path))
    text = scope.config_path.read_text()
    scope.config_path.write_text(text.replace("enabled = true\n", f'enabled = true\nupstream_ca_file = '
                                              f'"{tmp_path / "agent-root.pem"}"\n'))
    found = check_approved(load_config(scope.config_path), scope)
    assert [(u.item.key, u.reason) for u in found] == [("settings", "changed")]
    (line,) = refusal_lines(found, scope, flag="")
    assert line.startswith("the [tls]/[secrets] settings changed since it was approved (tls.upstream_ca_file "
                           "(none) -> ")
    assert line.endswith("cordon route approve --all")
    scope.config_path.write_text(text.replace("[tls]", '[secrets]\nop_path = "/tmp/op"\n\n[tls]'))
    assert pending(scope) == [("settings", "changed")]
    scope.config_path.write_text(text.replace(str(scope.ca_key), str(tmp_path / "proj" / "ca-key.pem")))
    assert pending(scope) == [("settings", "changed")]


def test_the_record_and_key_are_private_and_mac_checked(scope: ScopePaths) -> None:
    old_umask = os.umask(0)
    try:
        approve(scope, load_config(scope.config_path))
    finally:
        os.umask(old_umask)
    record, key = scope.state_dir / RECORD_NAME, scope.state_dir / KEY_NAME
    assert stat.S_IMODE(record.stat().st_mode) == 0o600 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    write(scope, ROUTE + EXFIL)
    data = json.loads(record.read_text())
    forged = dict(data)
    items = data["configs"][str(scope.config_path)]
    forged["configs"] = {str(scope.config_path): {**items, "route:exfil": route_item(
        load_config(scope.config_path).routes[1]).fields}}
    record.write_text(json.dumps(forged))  # someone who can write the record but not compute the MAC
    found = check_approved(load_config(scope.config_path), scope)
    assert {u.reason for u in found} == {"unverified"}
    assert "does not verify" in refusal_lines(found, scope, flag="")[0]


def test_a_record_from_another_scope_does_not_verify(scope: ScopePaths, tmp_path: Path) -> None:
    approve(scope, load_config(scope.config_path))
    other = resolve_scope(None, None, env={"XDG_CONFIG_HOME": str(tmp_path / "other")}, cwd=tmp_path / "proj")
    approve(other, load_config(scope.config_path))
    (scope.state_dir / RECORD_NAME).write_bytes((other.state_dir / RECORD_NAME).read_bytes())
    assert pending(scope) == [("route:openai", "unverified")]


def test_symlinked_or_loose_key_is_refused(scope: ScopePaths, tmp_path: Path) -> None:
    approve(scope, load_config(scope.config_path))
    key = scope.state_dir / KEY_NAME
    key.chmod(0o644)
    found = check_approved(load_config(scope.config_path), scope)
    assert found and found[0].reason == "unverified" and "accessible by group or others" in found[0].detail
    with pytest.raises(ApprovalError, match="accessible by group or others"):
        approve(scope, load_config(scope.config_path))
    planted = tmp_path / "planted.key"
    planted.write_bytes(key.read_bytes())
    key.unlink()
    key.symlink_to(planted)
    found = check_approved(load_config(scope.config_path), scope)
    assert found and "is a symlink" in found[0].detail
    with pytest.raises(ApprovalError, match="is a symlink"):
        approve(scope, load_config(scope.config_path))


def test_editing_one_field_of_a_tampered_route_keeps_the_tampering_unapproved(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    before_edit = ROUTE.replace('host = "api.openai.com"', 'host = "evil.example"')
    write(scope, before_edit)
    before = load_config(scope.config_path).routes[0]
    write(scope, before_edit.replace('host = "evil.example"', 'host = "evil.example"\nport = 443'))
    after = load_config(scope.config_path).routes[0]
    record_change(scope, scope.config_path, route_item(before), route_item(after))  # `route edit --port 443`
    (entry,) = check_approved(load_config(scope.config_path), scope)
    assert [(c.name, c.before, c.after) for c in entry.changes] == [("host", "api.openai.com", "evil.example")]


def test_route_add_rename_and_remove_are_recorded(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    write(scope, ROUTE + EXFIL)
    added = load_config(scope.config_path).routes[1]
    record_change(scope, scope.config_path, None, route_item(added))
    assert pending(scope) == []
    write(scope, ROUTE + EXFIL.replace('name = "exfil"', 'name = "renamed"'))
    renamed = load_config(scope.config_path).routes[1]
    record_change(scope, scope.config_path, route_item(added), route_item(renamed))
    assert pending(scope) == []
    record_change(scope, scope.config_path, route_item(renamed), None)
    write(scope, ROUTE + EXFIL.replace('name = "exfil"', 'name = "renamed"'))  # put back by hand
    assert pending(scope) == [("route:renamed", "new")]


def test_approving_records_what_was_shown_not_the_file_now(scope: ScopePaths) -> None:
    shown = load_config(scope.config_path)
    write(scope, ROUTE + EXFIL)  # changed between showing and recording
    approve(scope, shown)
    assert pending(scope) == [("route:exfil", "new")]
    with pytest.raises(KeyError):
        approve(scope, shown, ["route:exfil"])


def test_approve_all_drops_removed_routes(scope: ScopePaths) -> None:
    write(scope, ROUTE + EXFIL)
    approve(scope, load_config(scope.config_path))
    write(scope, ROUTE)
    approve(scope, load_config(scope.config_path))
    write(scope, ROUTE + EXFIL)
    assert pending(scope) == [("route:exfil", "new")]


def test_each_config_file_has_its_own_approvals(scope: ScopePaths) -> None:
    approve(scope, load_config(scope.config_path))
    other = scope.config_path.with_name("other.toml")
    other.write_text(scope.config_path.read_text())
    other_paths = resolve_scope(None, other, env={"XDG_CONFIG_HOME": str(scope.state_dir.parents[2])},
                                cwd=other.parent)
    assert other_paths.state_dir == scope.state_dir
    assert [u.reason for u in check_approved(load_config(other), other_paths)] == ["unrecorded"]
