"""`cordon route approve` and the approvals that `route add|edit|remove` record."""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
from cordon_config import cli, load_config
from cordon_config.approvals import check_approved
from cordon_config.commands import approve as approve_cmd
from cordon_config.edit import scaffold_config
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_testing.config import MemoryKeyring, approve_config, route_block

OPENAI = ["--name", "openai", "--host", "api.openai.com", "--header-name", "Authorization", "--scheme", "Bearer",
          "--source", "env", "--var", "OPENAI_API_KEY"]
EXFIL = route_block("exfil", "evil.example", 'source = "env"\nvar = "OPENAI_API_KEY"',
                    auth='type = "header"\nheader_name = "X-Exfil"')


@pytest.fixture
def paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ScopePaths:
    """A project scope as `cordon setup` leaves it (scaffold approved); cwd is the project; stdin is no TTY."""
    project = tmp_path / "proj"
    project.mkdir()
    monkeypatch.chdir(project)
    scope = resolve_scope(None, None, env=os.environ, cwd=project)
    scaffold_config(scope.config_path, listen=6790, ca_cert_path=scope.ca_cert, ca_key_path=scope.ca_key)
    approve_config(scope.config_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return scope


def run(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.route_main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def pending(paths: ScopePaths) -> list[tuple[str, str]]:
    return [(u.item.key, u.reason) for u in check_approved(load_config(paths.config_path), paths)]


def append(paths: ScopePaths, text: str) -> None:
    with open(paths.config_path, "a", encoding="utf-8") as handle:
        handle.write("\n" + text)


def test_route_add_edit_remove_record_their_approval(paths: ScopePaths, capsys) -> None:
    assert run(["add", *OPENAI], capsys)[0] == 0
    assert pending(paths) == []
    assert run(["edit", "openai", "--var", "OTHER_KEY"], capsys)[0] == 0
    assert pending(paths) == []
    assert run(["edit", "openai", "--name", "oai"], capsys)[0] == 0
    assert pending(paths) == []
    assert run(["remove", "oai", "--yes"], capsys)[0] == 0
    append(paths, route_block("oai", "api.openai.com", 'source = "env"\nvar = "OTHER_KEY"',
                              auth='type = "header"\nheader_name = "Authorization"\nscheme = "Bearer"'))
    assert pending(paths) == [("route:oai", "new")]  # a removed route's approval is gone with it


def test_editing_a_tampered_route_does_not_approve_the_tampering(paths: ScopePaths, capsys) -> None:
    assert run(["add", *OPENAI], capsys)[0] == 0
    paths.config_path.write_text(paths.config_path.read_text().replace('"api.openai.com"', '"evil.example"'))
    assert run(["edit", "openai", "--port", "443"], capsys)[0] == 0
    (entry,) = check_approved(load_config(paths.config_path), paths)
    assert [(c.name, c.before, c.after) for c in entry.changes] == [("host", "api.openai.com", "evil.example")]


def test_approve_shows_before_and_after_and_needs_yes_without_a_tty(paths: ScopePaths, capsys) -> None:
    assert run(["add", *OPENAI], capsys)[0] == 0
    append(paths, EXFIL)
    paths.config_path.write_text(paths.config_path.read_text().replace('var = "OPENAI_API_KEY"\n\n[[routes]]',
                                                                       'var = "GH_TOKEN"\n\n[[routes]]', 1))
    code, out, err = run(["approve", "--all"], capsys)
    assert code == 2 and "nothing approved: confirm on a terminal or pass --yes" in err
    assert 'route "openai" (changed since it was approved):' in out
    assert 'secret.var  "OPENAI_API_KEY" -> "GH_TOKEN"' in out
    assert 'route "exfil" (new, never approved):' in out and 'auth.header_name  (none) -> "x-exfil"' in out
    assert pending(paths) == [("route:openai", "changed"), ("route:exfil", "new")]
    code, out, _ = run(["approve", "exfil", "--yes"], capsys)
    assert code == 0 and 'approved route "exfil"' in out and "openai" not in out
    assert pending(paths) == [("route:openai", "changed")]
    code, out, _ = run(["approve", "openai", "--yes", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data == [{"item": "route:openai", "kind": "route", "name": "openai", "reason": "changed",
                                   "changes": [{"field": "secret.var", "before": "OPENAI_API_KEY",
                                                "after": "GH_TOKEN"}], "approved": True}]
    assert pending(paths) == []
    code, out, _ = run(["approve", "--all"], capsys)
    assert code == 0 and "nothing to approve" in out


def test_approve_asks_on_a_terminal(paths: ScopePaths, capsys, monkeypatch) -> None:
    append(paths, EXFIL)
    prompts: list[str] = []
    answers = ["n", "y"]
    monkeypatch.setattr(approve_cmd, "is_tty", lambda stream: True)
    monkeypatch.setattr("builtins.input", lambda prompt="": prompts.append(prompt) or answers.pop(0))
    code, out, _ = run(["approve", "exfil"], capsys)
    assert code == 0 and "nothing approved" in out and pending(paths) == [("route:exfil", "new")]
    code, out, _ = run(["approve", "exfil"], capsys)
    assert code == 0 and pending(paths) == []
    assert prompts == ["approve this? [y/N] "] * 2


def test_approve_usage_errors(paths: ScopePaths, capsys) -> None:
    assert run(["approve"], capsys)[0] == 2
    assert run(["approve", "openai", "--all"], capsys)[0] == 2
    code, _, err = run(["approve", "nope", "--yes"], capsys)
    assert code == 2 and "no route named 'nope'" in err


def test_list_and_show_say_what_is_not_approved(paths: ScopePaths, capsys) -> None:
    assert run(["add", *OPENAI], capsys)[0] == 0
    append(paths, EXFIL)
    code, out, _ = run(["list"], capsys)
    assert code == 0 and "not approved, so cordon will not use them: exfil (review, then: cordon route approve exfil)" in out
    _, out, _ = run(["list", "--json"], capsys)
    assert [(r["name"], r["approved"]) for r in json.loads(out)] == [("openai", True), ("exfil", False)]
    _, out, _ = run(["show", "exfil"], capsys)
    assert "approval: not approved as written (new)" in out


def test_secret_commands_never_run_or_store_for_an_unapproved_route(paths: ScopePaths, capsys, tmp_path: Path,
                                                                    fake_keyring: MemoryKeyring,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    append(paths, route_block("cmd", "api.example", f'source = "command"\nargv = ["touch", "{marker}"]'))
    append(paths, route_block("kr", "kr.example", 'source = "keyring"\naccount = "other-app"'))
    code = cli.secret_main(["check"])
    out = capsys.readouterr().out
    assert code == 1 and "not fetched: the route is not approved" in out and not marker.exists()
    monkeypatch.setattr(sys, "stdin", io.StringIO("sk-typed\n"))
    code = cli.secret_main(["set", "kr"])
    err = capsys.readouterr().err
    assert code == 1 and "route kr is not approved" in err and fake_keyring.entries == {}
