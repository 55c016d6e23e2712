"""`cordon listener add|edit|list|show|remove` and `cordon secret` for listeners: output, JSON, wizard, and one
clear line (exit 2) for bad input."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cordon_config import cli, load_config
from cordon_config.commands import common
from cordon_config.commands import listener as listener_cmd
from cordon_config.commands import secret as secret_cmd
from cordon_config.edit import scaffold_config
from cordon_testing.config import MemoryKeyring, approve_config

PROD = ["--name", "prod-db", "--port", "15432", "--upstream", "db.example.com:5432", "--username", "app_user"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the cwd) with a scaffolded cordon.toml (listen 6790) and no listeners."""
    directory = tmp_path / "proj"
    directory.mkdir()
    monkeypatch.chdir(directory)
    scaffold_config(directory / "cordon.toml", listen=6790, ca_cert_path=tmp_path / "c.pem",
                    ca_key_path=tmp_path / "k.pem")
    approve_config(directory / "cordon.toml")  # as `cordon setup` does for the file it writes
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return directory / "cordon.toml"


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str], main=cli.listener_main) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tty(monkeypatch: pytest.MonkeyPatch, answers: Sequence[str]) -> list[str]:
    prompts: list[str] = []
    queue = list(answers)

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        return queue.pop(0)

    for module in (common, listener_cmd, secret_cmd):
        monkeypatch.setattr(module, "is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr("builtins.input", fake_input)
    return prompts


GARBAGE = [
    [], ["frobnicate"], ["add", "--name", "x"], ["add", *PROD[:4]],
    ["add", *PROD[:-2]],
    ["add", "--name", "x", "--port", "15432", "--upstream", "postgres://db/x", "--username", "u"],
    ["add", "--name", "Bad Name", "--port", "15432", "--upstream", "db.test", "--username", "u"],
    ["add", "--name", "x", "--port", "6790", "--upstream", "db.test", "--username", "u"],
    ["add", "--name", "x", "--port", "70000", "--upstream", "db.test", "--username", "u"],
    ["add", "--name", "x", "--port", "15432", "--upstream", "db.test", "--username", "u", "--client-tls", "yes"],
    ["add", *PROD, "--source", "env"],
    ["add", *PROD, "--var", "X"],
    ["add"],  # no terminal: flags are needed
    ["show", "nope"], ["edit", "nope", "--port", "1"], ["remove", "nope", "--yes"],
    ["remove", "nope"],
]


@pytest.mark.parametrize("argv", GARBAGE, ids=[" ".join(a) or "nothing" for a in GARBAGE])
def test_bad_input_is_one_line_and_exit_2(project: Path, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    before = project.read_bytes()
    code, _, err = run(argv, capsys)
    assert code == 2, err
    assert "Traceback" not in err
    assert err.startswith(("cordon: ", "usage: ")), err
    assert project.read_bytes() == before


def test_add_list_show_edit_remove(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["add", *PROD, "--source", "1password", "--vault", "Engineering", "--item",
                          "Postgres Prod", "--field", "password"], capsys)
    assert code == 0, err
    assert "added listener prod-db: 127.0.0.1:15432 logs in to db.example.com:5432 as app_user" in out
    assert "op://Engineering/Postgres Prod/password" in out
    (item,) = load_config(project).listeners
    assert (item.port, item.upstream, item.client_tls, item.upstream_tls) == (
        15432, "db.example.com:5432", "accept", "verify-full")
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "prod-db" in out and "127.0.0.1:15432" in out and "accept/verify-full" in out
    code, out, _ = run(["list", "--json"], capsys)
    (data,) = json.loads(out)
    assert data["port"] == 15432 and data["auth"] == {"type": "password", "username": "app_user"}
    assert data["secret"] == {"source": "1password", "vault": "Engineering", "item": "Postgres Prod",
                              "field": "password"}
    code, out, _ = run(["show", "prod-db"], capsys)
    assert 'psql "host=127.0.0.1 port=15432 user=app_user dbname=<database>"' in out
    assert json.loads(run(["show", "prod-db", "--json"], capsys)[1])["upstream_tls"] == "verify-full"
    code, out, _ = run(["edit", "prod-db", "--client-tls", "require", "--source", "env", "--var", "PGPW"], capsys)
    assert code == 0 and "client tls: accept -> require" in out and "secret: 1password" in out
    assert load_config(project).listeners[0].secret.fields == {"var": "PGPW"}
    code, out, _ = run(["edit", "prod-db", "--upstream", "db.example.com"], capsys)
    assert code == 0 and "nothing changed" in out
    code, out, _ = run(["remove", "prod-db", "--yes"], capsys)
    assert code == 0 and "removed listener prod-db" in out
    assert load_config(project).listeners == ()
    code, out, _ = run(["list"], capsys)
    assert "no listeners" in out


def test_add_refuses_a_route_name(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.route_main(["add", "--name", "db", "--host", "api.db.test", "--header-name", "x-k"]) == 0
    capsys.readouterr()
    code, _, err = run(["add", "--name", "db", "--port", "15432", "--upstream", "db.test", "--username", "u"], capsys)
    assert code == 2 and "a route named 'db' already exists" in err
    code, _, err = run(["show", "db"], capsys)
    assert code == 2 and "db is a route" in err


def test_wizard(project: Path, monkeypatch: pytest.MonkeyPatch, fake_keyring: MemoryKeyring,
                capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tty(monkeypatch, ["postgres://nope", "db.example.com", "", "15440", "app_user", "", "", "", "", "",
                                ""])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "pg-wizard-pw")
    code, out, err = run(["add"], capsys)
    assert code == 0, err
    (item,) = load_config(project).listeners
    assert (item.name, item.port, item.upstream, item.auth.username) == ("db", 15440, "db.example.com:5432",
                                                                         "app_user")
    assert dict(item.secret.fields) == {"account": "db", "service": "cordon"}
    assert fake_keyring.entries[("cordon", "db")] == "pg-wizard-pw"
    assert "stored the secret for listener db" in out and "not a URL" in out
    assert any("listener name [db]" in p for p in prompts)


def test_secret_set_check_delete_for_a_listener(project: Path, fake_keyring: MemoryKeyring,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["add", *PROD], capsys)[0] == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("pässwörd with spaces\n"))  # not a header value: fine here
    code, out, err = run(["set", "prod-db"], capsys, cli.secret_main)
    assert code == 0, err
    assert "stored the secret for listener prod-db" in out
    assert fake_keyring.entries[("cordon", "prod-db")] == "pässwörd with spaces"
    code, out, _ = run(["check", "--json"], capsys, cli.secret_main)
    assert json.loads(out) == [{"route": "prod-db", "kind": "listener", "ok": True, "source": "keyring"}]
    assert "pässwörd" not in out
    monkeypatch.setattr(sys, "stdin", io.StringIO("a\0b"))
    code, _, err = run(["set", "prod-db"], capsys, cli.secret_main)
    assert code == 2 and "NUL" in err
    code, out, _ = run(["delete", "prod-db"], capsys, cli.secret_main)
    assert code == 0 and "deleted the secret of listener prod-db" in out
    code, out, _ = run(["check"], capsys, cli.secret_main)
    assert code == 1 and "failed  prod-db" in out and "cordon secret set prod-db" in out


# -- approvals ------------------------------------------------------------------------------------------------


def test_listener_commands_record_their_approval_and_a_hand_edit_needs_one(
        project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cordon_config.approvals import check_approved
    from cordon_config.scope import resolve_scope

    paths = resolve_scope(None, None, env=os.environ, cwd=project.parent)
    assert run(["add", *PROD], capsys)[0] == 0
    assert check_approved(load_config(project), paths) == []
    assert run(["edit", "prod-db", "--upstream", "db2.example.com"], capsys)[0] == 0
    assert check_approved(load_config(project), paths) == []
    # the agent rewrites where the password goes
    project.write_text(project.read_text().replace("db2.example.com:5432", "evil.example.net:5432"))
    (pending,) = check_approved(load_config(project), paths)
    assert (pending.item.kind, pending.item.name, pending.reason) == ("listener", "prod-db", "changed")
    assert [(c.name, c.before, c.after) for c in pending.changes] == [
        ("upstream", "db2.example.com:5432", "evil.example.net:5432")]
    code, out, _ = run(["list"], capsys)
    assert "not approved, so cordon will not use them: prod-db" in out and "cordon listener approve prod-db" in out
    code, out, _ = run(["show", "prod-db", "--json"], capsys)
    assert json.loads(out)["approved"] is False
    code, _, err = run(["approve", "prod-db"], capsys)  # not a terminal: needs --yes
    assert code == 2 and "cordon listener approve prod-db --yes" in err
    code, out, _ = run(["approve", "prod-db", "--yes"], capsys)
    assert code == 0 and 'upstream  "db2.example.com:5432" -> "evil.example.net:5432"' in out
    assert check_approved(load_config(project), paths) == []


def test_a_hand_added_listener_gets_no_secret_until_approved(project: Path, fake_keyring: MemoryKeyring,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    project.write_text(project.read_text() + '\n[[listeners]]\nname = "sneaky"\nport = 15499\n'
                       'upstream = "attacker.example.net"\n[listeners.auth]\ntype = "password"\n'
                       'username = "app"\n[listeners.auth.secret]\nsource = "command"\nargv = ["sh", "-c", "id"]\n')
    code, out, _ = run(["check", "--json"], capsys, cli.secret_main)
    (result,) = json.loads(out)
    assert result["ok"] is False and "the listener is not approved" in result["reason"]
    assert "cordon listener approve sneaky" in result["hint"]
    code, _, err = run(["approve", "--all"], capsys)
    assert code == 2 and "nothing approved: confirm on a terminal or pass --yes" in err
    assert run(["approve", "nope", "--yes"], capsys)[0] == 2
