"""`cordon route|secret|token`: behaviour, output, and one clear line (exit 2) for every kind of garbage."""

from __future__ import annotations

import io
import json
import secrets as pysecrets
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from cordon_config import cli, load_config
from cordon_config.commands import common
from cordon_config.commands import route as route_cmd
from cordon_config.commands import secret as secret_cmd
from cordon_config.commands import token as token_cmd
from cordon_config.edit import scaffold_config
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_config.tokens import TokenStore
from cordon_testing.config import MemoryKeyring, approve_config

Main = Callable[..., int]


def tokens_path() -> Path:
    """The tokens.toml of the project scope of the current directory."""
    import os

    return resolve_scope(None, None, env=os.environ, cwd=Path.cwd()).tokens_path

OPENAI = ["--name", "openai", "--host", "api.openai.com", "--header-name", "Authorization", "--scheme", "Bearer"]


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project directory (the cwd) with a scaffolded cordon.toml and no routes."""
    directory = tmp_path / "proj"
    directory.mkdir()
    monkeypatch.chdir(directory)
    scaffold_config(directory / "cordon.toml", listen=6790, ca_cert_path=tmp_path / "c.pem",
                    ca_key_path=tmp_path / "k.pem")
    approve_config(directory / "cordon.toml")  # as `cordon setup` does for the file it writes
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return directory / "cordon.toml"


def run(main: Main, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tty(monkeypatch: pytest.MonkeyPatch, answers: Sequence[str]) -> list[str]:
    """Pretend stdin is a terminal and answer input() prompts in order; returns the prompts seen."""
    prompts: list[str] = []
    queue = list(answers)

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        return queue.pop(0)

    for module in (common, route_cmd, secret_cmd):
        monkeypatch.setattr(module, "is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr("builtins.input", fake_input)
    return prompts


# -- garbage: exit 2, one line ------------------------------------------------------------------------------

GARBAGE: list[tuple[Main, list[str]]] = [
    (cli.route_main, []), (cli.route_main, ["frobnicate"]), (cli.route_main, ["add", "--nme", "x"]),
    (cli.route_main, ["add", "--name", "x"]), (cli.route_main, ["add", "--host", "a.test"]),
    (cli.route_main, ["add", "--name", "x", "--host", "http://a.test/v1", "--header-name", "x-k"]),
    (cli.route_main, ["add", "--name", "Bad Name", "--host", "a.test", "--header-name", "x-k"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "Host"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "Authorization"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--auth-type", "basic"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--auth-type", "bearer"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "x-k", "--source", "env"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "x-k", "--var", "V"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "x-k", "--source", "command",
                      "--argv", "'unclosed"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "x-k", "--source", "command",
                      "--argv", "[1, 2]"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--port", "abc"]),
    (cli.route_main, ["add", "--name", "x", "--host", "a.test", "--header-name", "x-k", "--port", "70000"]),
    (cli.route_main, ["add", *OPENAI, "--scope", "user", "--config", "x.toml"]),
    (cli.route_main, ["add"]),  # stdin is not a terminal
    (cli.route_main, ["edit"]), (cli.route_main, ["edit", "nope", "--host", "a.test"]),
    (cli.route_main, ["edit", "openai"]), (cli.route_main, ["edit", "openai", "--host", "not a host"]),
    (cli.route_main, ["edit", "openai", "--auth-type", "basic", "--username", "u", "--scheme", "X"]),
    (cli.route_main, ["show"]), (cli.route_main, ["show", "nope"]), (cli.route_main, ["list", "extra"]),
    (cli.route_main, ["remove", "openai"]), (cli.route_main, ["remove", "nope", "--yes"]),
    (cli.route_main, ["list", "--scope", "galaxy"]),
    (cli.secret_main, []), (cli.secret_main, ["set"]), (cli.secret_main, ["set", "nope"]),
    (cli.secret_main, ["set", "envroute"]), (cli.secret_main, ["delete", "envroute"]),
    (cli.secret_main, ["check", "nope"]), (cli.secret_main, ["peek", "openai"]),
    (cli.token_main, []), (cli.token_main, ["revoke"]), (cli.token_main, ["rotate", "a", "b"]),
    (cli.token_main, ["revoke", "nope"]), (cli.token_main, ["rotate", "nope"]),
    (cli.token_main, ["rotate", "default", "--all"]), (cli.token_main, ["show"]),
    (cli.main, []), (cli.main, ["bogus"]), (cli.main, ["route"]), (cli.main, ["--wat"]),
]


@pytest.mark.parametrize(("main", "argv"), GARBAGE, ids=[f"{m.__name__}:{' '.join(a)}" for m, a in GARBAGE])
def test_garbage_exits_2_with_one_clear_line(main: Main, argv: list[str], project: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    assert cli.route_main(["add", "--name", "envroute", "--host", "env.test", "--header-name", "x-k",
                           "--source", "env", "--var", "V"]) == 0
    store_dir = tokens_path()
    TokenStore.open(store_dir).ensure("default")
    capsys.readouterr()
    code, out, err = run(main, argv, capsys)
    assert code == 2, (out, err)
    lines = err.splitlines()
    assert lines and lines[0].startswith("cordon: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("hint: ")), err
    assert "Traceback" not in err + out


def test_garbage_in_a_real_process_has_no_traceback(project: Path) -> None:
    for argv in (["route", "add", "--name", "x"], ["secret", "check", "--json", "--bogus"], ["token", "nope"]):
        result = subprocess.run([sys.executable, "-m", "cordon_config", *argv], capture_output=True, text=True,
                                stdin=subprocess.DEVNULL, timeout=60, cwd=project.parent)
        assert result.returncode == 2 and "Traceback" not in result.stderr
        assert result.stderr.startswith("cordon: ") and len(result.stderr.splitlines()) <= 2


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for main, argv in ((cli.route_main, ["add", "--help"]), (cli.secret_main, ["--help"]),
                       (cli.token_main, ["rotate", "--help"]), (cli.main, ["--help"])):
        code, out, _ = run(main, argv, capsys)
        assert code == 0 and "examples:" in out


# -- route --------------------------------------------------------------------------------------------------


def test_route_add_list_show_edit_remove(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(cli.route_main, ["add", *OPENAI], capsys)
    assert code == 0 and "added route openai" in out and "cordon secret set openai" in out
    assert common.RESTART in out
    code, out, _ = run(cli.route_main, ["add", "--name", "gh", "--host", "API.GitHub.test.", "--auth-type", "basic",
                                        "--username", "x-access-token", "--source", "command", "--argv",
                                        '["gh", "auth", "token"]'], capsys)
    assert code == 0
    config = load_config(project)
    assert [(r.name, r.host) for r in config.routes] == [("openai", "api.openai.com"), ("gh", "api.github.test")]
    assert config.routes[0].secret.fields == {"account": "openai", "service": "cordon"}
    assert config.routes[1].secret.fields["argv"] == ("gh", "auth", "token")

    code, out, _ = run(cli.route_main, ["list"], capsys)
    assert code == 0 and out.splitlines()[0].split() == ["NAME", "HOST", "INJECTS", "SECRET"]
    assert "Authorization: Bearer <secret>" in out and "command gh auth token" in out
    code, out, _ = run(cli.route_main, ["list", "--json"], capsys)
    data = json.loads(out)
    assert data[1]["auth"] == {"type": "basic", "username": "x-access-token"}
    assert data[1]["secret"] == {"source": "command", "argv": ["gh", "auth", "token"]}
    code, out, _ = run(cli.route_main, ["show", "gh", "--json"], capsys)
    assert json.loads(out)["host"] == "api.github.test"

    before = project.read_text()
    code, out, _ = run(cli.route_main, ["edit", "openai", "--source", "env", "--var", "OPENAI_KEY"], capsys)
    assert code == 0 and "secret: keyring cordon/openai -> env $OPENAI_KEY" in out and common.RESTART in out
    after = project.read_text()
    assert after == before.replace('source = "keyring"\naccount = "openai"', 'source = "env"\nvar = "OPENAI_KEY"')
    code, out, _ = run(cli.route_main, ["edit", "openai", "--port", "8443"], capsys)
    assert code == 0 and "port: any -> 8443" in out and load_config(project).routes[0].port == 8443
    code, out, _ = run(cli.route_main, ["edit", "openai", "--port", "0"], capsys)
    assert code == 0 and load_config(project).routes[0].port is None and "port =" not in project.read_text()
    code, out, _ = run(cli.route_main, ["edit", "openai", "--var", "OPENAI_KEY"], capsys)
    assert code == 0 and "nothing changed" in out

    code, out, _ = run(cli.route_main, ["remove", "gh", "--yes"], capsys)
    assert code == 0 and "removed route gh" in out
    assert [r.name for r in load_config(project).routes] == ["openai"]


def test_route_remove_asks_on_a_terminal(project: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    prompts = tty(monkeypatch, ["n", "y"])
    code, out, _ = run(cli.route_main, ["remove", "openai"], capsys)
    assert code == 1 and "nothing removed" in out and len(load_config(project).routes) == 1
    code, out, _ = run(cli.route_main, ["remove", "openai"], capsys)
    assert code == 0 and load_config(project).routes == ()
    assert prompts[0].startswith("remove route openai (api.openai.com)")


def test_route_add_wizard(project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    prompts = tty(monkeypatch, ["not a host", "api.anthropic.com", "", "header", "x-api-key", "", "env",
                                "ANTHROPIC_API_KEY", "", "", ""])
    code, out, _ = run(cli.route_main, ["add"], capsys)
    assert code == 0, out
    (route,) = load_config(project).routes
    assert (route.name, route.host, route.auth.header_name, route.auth.scheme) == (  # type: ignore[union-attr]
        "anthropic", "api.anthropic.com", "x-api-key", None)
    assert dict(route.secret.fields) == {"var": "ANTHROPIC_API_KEY"}
    assert any("route name [anthropic]" in p for p in prompts)
    assert "not a valid DNS name" in out
    # least privilege: the provider's suggested rules are the defaults
    assert route.methods == ("POST", "GET") and route.paths == ("/v1/messages*", "/v1/models*")
    assert route.rate_limit is None and any("[POST,GET]" in p for p in prompts)


def test_route_add_wizard_rules_and_rate_limit(project: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    tty(monkeypatch, ["api.example.com", "", "", "x-api-key", "", "env", "EXAMPLE_KEY",
                      "post", "GET", "/v1/../x", "/v1/items*, /v1/status", "-3", "30"])
    code, out, _ = run(cli.route_main, ["add"], capsys)
    assert code == 0, out
    (route,) = load_config(project).routes
    assert route.methods == ("GET",) and route.paths == ("/v1/items*", "/v1/status")
    assert route.rate_limit is not None and route.rate_limit.requests_per_minute == 30
    assert 'write "POST"' in out and "dot segment" in out and "a positive number" in out
    tty(monkeypatch, ["other.example.com", "other", "", "x-api-key", "", "env", "OTHER_KEY", "any", "any", "none"])
    assert run(cli.route_main, ["add"], capsys)[0] == 0
    other = load_config(project).routes[1]
    assert (other.methods, other.paths, other.rate_limit) == (None, None, None)


def test_route_add_wizard_keyring_defaults(project: Path, monkeypatch: pytest.MonkeyPatch,
                                          fake_keyring: MemoryKeyring, capsys: pytest.CaptureFixture[str]) -> None:
    tty(monkeypatch, ["api.openai.com", "", "", "", "", "", "", "", "", "", "", ""])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sk-wizard")
    code, out, _ = run(cli.route_main, ["add"], capsys)
    assert code == 0
    (route,) = load_config(project).routes
    assert route.auth.header_name == "Authorization" and route.auth.scheme == "Bearer"  # type: ignore[union-attr]
    assert dict(route.secret.fields) == {"account": "openai", "service": "cordon"}
    assert fake_keyring.entries[("cordon", "openai")] == "sk-wizard" and "stored the secret" in out


def test_invalid_config_is_reported_in_full(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    project.write_text("listen = 0\nbogus = 1\n")
    code, _, err = run(cli.route_main, ["list"], capsys)
    assert code == 1 and "2 problems" in err and "cordon.toml:1: listen" in err and "Traceback" not in err
    project.unlink()
    code, _, err = run(cli.route_main, ["list"], capsys)
    assert code == 1 and "no cordon.toml" in err and "cordon setup" in err


def test_scope_user(project: Path, isolated_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user_config = isolated_home / ".config" / "cordon" / "cordon.toml"
    scaffold_config(user_config, listen=6800, ca_cert_path="/c", ca_key_path="/k")
    assert cli.route_main(["add", "--scope", "user", *OPENAI]) == 0
    assert [r.name for r in load_config(user_config).routes] == ["openai"]
    assert load_config(project).routes == ()


# -- secret -------------------------------------------------------------------------------------------------


def test_secret_set_from_stdin_check_delete(project: Path, fake_keyring: MemoryKeyring,
                                            monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    canary = "canary-" + pysecrets.token_hex(12)
    assert cli.route_main(["add", *OPENAI]) == 0
    code, out, err = run(cli.secret_main, ["check"], capsys)
    assert code == 1 and "failed" in out and "cordon secret set openai" in out
    monkeypatch.setattr(sys, "stdin", io.StringIO(canary + "\n"))
    code, out, err = run(cli.secret_main, ["set", "openai"], capsys)
    assert code == 0 and fake_keyring.entries[("cordon", "openai")] == canary
    code, out2, err2 = run(cli.secret_main, ["check"], capsys)
    assert code == 0 and out2.startswith("ok") and "openai" in out2
    code, out3, _ = run(cli.secret_main, ["check", "openai", "--json"], capsys)
    assert json.loads(out3) == [{"route": "openai", "kind": "route", "ok": True, "source": "keyring"}]
    code, out4, _ = run(cli.secret_main, ["delete", "openai"], capsys)
    assert code == 0 and ("cordon", "openai") not in fake_keyring.entries
    code, out5, err5 = run(cli.secret_main, ["delete", "openai"], capsys)
    assert code == 1 and "no secret stored" in err5
    for text in (out, err, out2, err2, out3, out4, out5, err5):
        assert canary not in text


def test_secret_set_on_a_terminal_uses_getpass(project: Path, fake_keyring: MemoryKeyring,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    tty(monkeypatch, [])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "sk-from-getpass")
    code, _, _ = run(cli.secret_main, ["set", "openai"], capsys)
    assert code == 0 and fake_keyring.entries[("cordon", "openai")] == "sk-from-getpass"


def test_secret_set_refuses_bad_values_and_missing_backend(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO("two\nlines\n"))
    code, _, err = run(cli.secret_main, ["set", "openai"], capsys)
    assert code == 2 and "line break" in err and "two" not in err
    import keyring
    from keyring.backends import fail

    keyring.set_keyring(fail.Keyring())
    monkeypatch.setattr(sys, "stdin", io.StringIO("value"))
    code, _, err = run(cli.secret_main, ["set", "openai"], capsys)
    assert code == 1 and "no keyring backend" in err and "Traceback" not in err


# -- token --------------------------------------------------------------------------------------------------


def test_token_list_rotate_revoke_never_print_values(project: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(token_cmd, "rotation_hooks", list)  # as when cordon-config is installed alone
    code, out, _ = run(cli.token_main, ["list"], capsys)
    assert code == 0 and "no tokens file" in out
    code, _, err = run(cli.token_main, ["rotate"], capsys)
    assert code == 1 and "cordon setup" in err
    path = tokens_path()
    store = TokenStore.open(path)
    values = [store.ensure("default"), store.ensure("codex")]
    outputs = []
    code, out, _ = run(cli.token_main, ["list"], capsys)
    outputs.append(out)
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == ["default", "codex"]
    code, out, _ = run(cli.token_main, ["list", "--json"], capsys)
    outputs.append(out)
    assert [t["name"] for t in json.loads(out)] == ["default", "codex"]
    code, out, _ = run(cli.token_main, ["rotate", "codex"], capsys)
    outputs.append(out)
    assert code == 0 and "cordon setup codex" in out
    new_codex = TokenStore.load(path).value("codex")  # type: ignore[union-attr]
    assert new_codex != values[1]
    code, out, _ = run(cli.token_main, ["rotate", "--all"], capsys)
    outputs.append(out)
    assert code == 0 and out.count("rotated token") == 2
    values += [TokenStore.load(path).value(n) for n in ("default", "codex")]  # type: ignore[union-attr]
    code, out, _ = run(cli.token_main, ["revoke", "codex"], capsys)
    outputs.append(out)
    assert code == 0 and TokenStore.load(path).names() == ["default"]  # type: ignore[union-attr]
    for out in outputs:
        for value in [*values, new_codex]:
            assert value not in out


def test_os_errors_are_one_line_not_a_traceback(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = project.parent / "cordon.toml"
    config.unlink()
    config.mkdir()  # the config cannot be read (IsADirectoryError; works as root too)
    code, _, err = run(cli.route_main, ["add", *OPENAI], capsys)
    assert code == 1 and err.startswith("cordon: ") and len(err.splitlines()) == 1 and "Traceback" not in err


def test_token_rotate_runs_the_rotation_hooks(project: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    path = tokens_path()
    store = TokenStore.open(path)
    store.ensure("default")
    store.ensure("codex")
    calls: list[tuple[Path, str, str]] = []

    def hook(paths: ScopePaths, name: str) -> list[str]:
        calls.append((paths.tokens_path, name, TokenStore.load(paths.tokens_path).value(name)))  # type: ignore[union-attr]
        return [f"rewrote /somewhere/{name}.env"]

    def broken(paths: ScopePaths, name: str) -> list[str]:
        raise RuntimeError("integration files are gone")

    monkeypatch.setattr(token_cmd, "rotation_hooks", lambda: [hook])
    code, out, _ = run(cli.token_main, ["rotate", "codex"], capsys)
    assert code == 0 and "rewrote /somewhere/codex.env" in out
    assert calls == [(path, "codex", TokenStore.load(path).value("codex"))]  # type: ignore[union-attr]
    monkeypatch.setattr(token_cmd, "rotation_hooks", lambda: [broken])
    code, out, err = run(cli.token_main, ["rotate", "--all"], capsys)
    assert code == 1 and "integration files are gone" in err and "cordon setup codex" in err
    assert out.count("rotated token") == 2
