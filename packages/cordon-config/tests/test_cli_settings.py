"""`cordon config`, `cordon scopes`, and the rough edges of route/secret a new user hit."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from cordon_config import cli, load_config
from cordon_config.commands import common
from cordon_config.commands import route as route_cmd
from cordon_config.commands import secret as secret_cmd
from cordon_config.edit import scaffold_config
from cordon_config.scope import resolve_scope
from cordon_config.scopes import record_scope
from cordon_testing.config import MemoryKeyring

TOOL = Path(sys.executable).parent / "cordon-config"  # the installed script, as a user runs it
OPENAI = ["--name", "openai", "--host", "api.openai.com", "--header-name", "Authorization", "--scheme", "Bearer"]


def make_project(directory: Path, listen: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "cordon.toml"
    scaffold_config(config, listen=listen, ca_cert_path=directory / "c.pem", ca_key_path=directory / "k.pem")
    record_scope(resolve_scope(None, None, env=os.environ, cwd=directory))
    return config


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    config = make_project(tmp_path / "proj", 6790)
    monkeypatch.chdir(config.parent)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return config


def run(main, argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tty(monkeypatch: pytest.MonkeyPatch, answers: Sequence[str]) -> list[str]:
    prompts: list[str] = []
    queue = list(answers)

    def fake_input(prompt: str = "") -> str:
        prompts.append(prompt)
        return queue.pop(0)

    for module in (common, route_cmd, secret_cmd):
        monkeypatch.setattr(module, "is_tty", lambda stream: stream is sys.stdin)
    monkeypatch.setattr("builtins.input", fake_input)
    return prompts


# -- cordon config --------------------------------------------------------------------------------------------


def test_config_set_get_unset_keep_the_file_and_validate(project: Path, capsys) -> None:
    before = project.read_text()
    code, out, _ = run(cli.config_main, ["set", "secret_ttl", "60"], capsys)
    assert code == 0 and out.startswith(f"secret_ttl = 60 in {project}")
    assert load_config(project).secret_ttl == 60
    assert project.read_text().startswith(before.split("\n\n", 1)[0])  # the header comment kept
    assert (project.parent / "cordon.toml.bak").read_text() == before
    code, out, _ = run(cli.config_main, ["get", "secret_ttl", "--json"], capsys)
    assert json.loads(out) == {"secret_ttl": 60}
    code, out, _ = run(cli.config_main, ["unset", "secret_ttl"], capsys)
    assert code == 0 and load_config(project).secret_ttl == 10.0  # back to the default
    code, out, _ = run(cli.config_main, ["set", "limits.max_connections", "64"], capsys)
    assert code == 0 and load_config(project).limits.max_connections == 64
    code, _, err = run(cli.config_main, ["set", "limits.max_connections", "-3"], capsys)
    assert code == 2 and err.startswith("cordon: limits.max_connections: ") and load_config(project).limits \
        .max_connections == 64  # invalid: nothing written
    code, _, err = run(cli.config_main, ["set", "tls.name_constraints", "maybe"], capsys)
    assert code == 2 and "not true or false" in err
    code, _, err = run(cli.config_main, ["unset", "listen"], capsys)
    assert code == 2 and "listen cannot be unset" in err
    code, _, err = run(cli.config_main, ["set", "lisen", "7000"], capsys)
    assert code == 2 and "did you mean 'listen'?" in err


def test_config_set_listen_refuses_another_scopes_port(tmp_path: Path, project: Path, capsys) -> None:
    other = make_project(tmp_path / "other", 6795)
    code, _, err = run(cli.config_main, ["set", "listen", "6795"], capsys)
    assert code == 2
    assert f"port 6795 is already the port of another cordon scope ({other})" in err
    assert "hint: choose another, e.g. " in err and "e.g. 6790 " not in err  # not its own current port
    assert load_config(project).listen == 6790
    code, _out, _ = run(cli.config_main, ["set", "listen", "6801"], capsys)
    assert code == 0 and load_config(project).listen == 6801


def test_config_path_names_the_config_found_from_a_subdirectory(project: Path, monkeypatch, capsys) -> None:
    sub = project.parent / "src" / "deep"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    code, out, err = run(cli.config_main, ["path"], capsys)
    assert code == 0 and out.strip() == str(project) and err == ""
    code, out, err = run(cli.config_main, ["set", "secret_ttl", "5"], capsys)
    assert code == 0 and err == f"cordon: using {project}\n"  # a change names the file it changed
    code, out, _ = run(cli.config_main, ["path", "--json"], capsys)
    assert json.loads(out)["found_above"] is True


def test_one_message_for_no_config(tmp_path: Path, monkeypatch, capsys) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    monkeypatch.chdir(bare)
    for main, argv in ((cli.route_main, ["list"]), (cli.config_main, ["set", "listen", "7000"]),
                       (cli.route_main, ["add", *OPENAI]), (cli.secret_main, ["check"])):
        code, _, err = run(main, argv, capsys)
        assert code == 1, argv
        assert err.splitlines()[0] == f"cordon: no cordon.toml in {bare} or a parent directory", argv
        assert err.splitlines()[1].startswith("hint: run `cordon setup`")


# -- cordon scopes --------------------------------------------------------------------------------------------


def test_scopes_list_and_prune(tmp_path: Path, project: Path, capsys) -> None:
    gone = make_project(tmp_path / "gone", 6791)
    gone_state = resolve_scope(None, None, env=os.environ, cwd=gone.parent).state_dir
    gone.unlink()
    code, out, _ = run(cli.scopes_main, ["list", "--json"], capsys)
    rows = {row["config"]: row for row in json.loads(out)}
    assert rows[str(project)]["state"] == "ok" and rows[str(project)]["port"] == 6790
    assert rows[str(gone)]["state"] == "gone"
    code, out, _ = run(cli.scopes_main, ["list"], capsys)
    assert out.split("\n")[0].split() == ["NAMESPACE", "PORT", "STATE", "CONFIG"]
    code, out, _ = run(cli.scopes_main, ["prune", "--dry-run"], capsys)
    assert code == 0 and str(gone_state) in out and "nothing was removed" in out and gone_state.exists()
    code, _, err = run(cli.scopes_main, ["prune"], capsys)  # stdin is not a terminal: ask nobody, remove nothing
    assert code == 2 and "without confirmation" in err and "--yes" in err and gone_state.exists()
    code, out, _ = run(cli.scopes_main, ["prune", "--yes"], capsys)
    assert code == 0 and not gone_state.exists()
    assert resolve_scope(None, None, env=os.environ, cwd=project.parent).state_dir.exists()  # the live one stays


def test_scopes_prune_asks_on_a_terminal(tmp_path: Path, project: Path, monkeypatch, capsys) -> None:
    gone = make_project(tmp_path / "gone", 6791)
    state = resolve_scope(None, None, env=os.environ, cwd=gone.parent).state_dir
    gone.unlink()
    monkeypatch.setattr("cordon_config.commands.scopes.is_tty", lambda stream: True)
    prompts = tty(monkeypatch, ["n", "y"])
    code, out, _ = run(cli.scopes_main, ["prune"], capsys)
    assert code == 1 and "nothing removed" in out and state.exists()
    code, out, _ = run(cli.scopes_main, ["prune"], capsys)
    assert code == 0 and not state.exists() and prompts[0].startswith("remove it")


# -- route remove and the keyring (minor 7) -------------------------------------------------------------------


def test_route_remove_says_what_became_of_the_keyring_secret(project: Path, fake_keyring: MemoryKeyring,
                                                             capsys) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    code, out, _ = run(cli.route_main, ["remove", "openai", "--yes"], capsys)
    assert code == 0 and "no secret was stored for it in the keyring (service cordon, account openai)" in out
    assert "cordon secret delete openai" not in out  # the advice that failed once the route was gone

    assert cli.route_main(["add", *OPENAI]) == 0
    fake_keyring.set_password("cordon", "openai", "sk-test")
    code, out, _ = run(cli.route_main, ["remove", "openai", "--yes"], capsys)
    assert "its secret is kept in the keyring (service cordon, account openai); delete it with: " \
           "cordon secret delete --account openai" in out
    code, out, _ = run(cli.secret_main, ["delete", "--account", "openai"], capsys)  # works without the route
    assert code == 0 and fake_keyring.get_password("cordon", "openai") is None

    assert cli.route_main(["add", *OPENAI]) == 0
    fake_keyring.set_password("cordon", "openai", "sk-test")
    code, out, _ = run(cli.route_main, ["remove", "openai", "--yes", "--delete-secret"], capsys)
    assert code == 0 and "deleted its secret from the keyring" in out
    assert fake_keyring.get_password("cordon", "openai") is None


def test_a_keyring_entry_another_route_reads_is_kept(project: Path, fake_keyring: MemoryKeyring, capsys) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    assert cli.route_main(["add", "--name", "azure", "--host", "azure.test", "--header-name", "api-key",
                           "--account", "openai"]) == 0
    fake_keyring.set_password("cordon", "openai", "sk-test")
    _code, out, _ = run(cli.route_main, ["remove", "openai", "--yes", "--delete-secret"], capsys)
    assert "is kept: route azure uses it too" in out and fake_keyring.get_password("cordon", "openai") == "sk-test"


def test_route_remove_asks_about_the_secret_on_a_terminal(project: Path, fake_keyring: MemoryKeyring,
                                                          monkeypatch, capsys) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    fake_keyring.set_password("cordon", "openai", "sk-test")
    prompts = tty(monkeypatch, ["y", "y"])
    code, _out, _ = run(cli.route_main, ["remove", "openai"], capsys)
    assert code == 0 and prompts[1].startswith("also delete its secret from the keyring")
    assert fake_keyring.get_password("cordon", "openai") is None


def test_secret_delete_needs_a_route_or_an_account(project: Path, capsys) -> None:
    code, _, err = run(cli.secret_main, ["delete"], capsys)
    assert code == 2 and "give a route NAME or --account" in err
    code, _, err = run(cli.secret_main, ["delete", "--account", "nobody"], capsys)
    assert code == 1 and "no secret stored in the keyring for service cordon, account nobody" in err


# -- small things (minors 16, 17, 14, 3, 9) -------------------------------------------------------------------


def test_secret_check_columns_line_up(project: Path, fake_keyring: MemoryKeyring, capsys) -> None:
    assert cli.route_main(["add", *OPENAI]) == 0
    assert cli.route_main(["add", "--name", "a", "--host", "a.test", "--header-name", "x-k", "--source", "env",
                           "--var", "CORDON_MISSING_VAR"]) == 0
    fake_keyring.set_password("cordon", "openai", "sk-test")
    capsys.readouterr()
    code, out, _ = run(cli.secret_main, ["check"], capsys)
    lines = [line for line in out.splitlines() if not line.lstrip().startswith("hint:")]
    assert code == 1 and len({line.index("(") for line in lines}) == 1, out  # the sources start in one column


def test_an_env_secret_drops_one_trailing_newline_like_the_other_sources(project: Path, monkeypatch) -> None:
    from cordon_config.secrets import fetch_secret

    assert cli.route_main(["add", "--name", "a", "--host", "a.test", "--header-name", "x-k", "--source", "env",
                           "--var", "LOCAL_KEY"]) == 0
    config = load_config(project)
    for raw in ("sk-1\n", "sk-1\r\n", "sk-1"):
        monkeypatch.setenv("LOCAL_KEY", raw)
        assert fetch_secret(config.routes[0], config=config).reveal() == "sk-1"
    monkeypatch.setenv("LOCAL_KEY", "sk-1\n\n")  # one newline only, as for file and keyring
    with pytest.raises(Exception, match="line break"):
        fetch_secret(config.routes[0], config=config)


@pytest.mark.parametrize(("argv", "suggestion"), [
    (["route", "lst"], "did you mean 'list'?"),
    (["route", "add", "--nmae", "x"], "did you mean --name?"),
    (["token", "rotat"], "did you mean 'rotate'?"),
    (["route", "list", "--jsn"], "did you mean --json?"),
])
def test_a_mistyped_subcommand_or_option_gets_a_suggestion(project: Path, capsys, argv, suggestion) -> None:
    code, _, err = run(cli.main, argv, capsys)
    assert code == 2 and suggestion in err and err.count("\n") == 1


def test_route_add_warns_when_no_proxy_would_bypass_the_route(project: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("no_proxy", "localhost,.corp.test")
    code, _, err = run(cli.route_main, ["add", "--name", "local", "--host", "localhost", "--header-name", "x-k",
                                        "--source", "env", "--var", "K"], capsys)
    assert code == 0
    assert "warning: no_proxy=localhost,.corp.test in this shell sends requests for localhost around cordon" in err
    assert 'eval "$(cordon env)"' in err
    code, _, err = run(cli.route_main, ["add", "--name", "api", "--host", "api.corp.test", "--header-name", "x-k",
                                        "--source", "env", "--var", "K"], capsys)
    assert "requests for api.corp.test around cordon" in err  # a domain entry covers its subdomains
    monkeypatch.delenv("no_proxy")
    code, _, err = run(cli.route_main, ["add", "--name", "b", "--host", "b.test", "--header-name", "x-k",
                                        "--source", "env", "--var", "K"], capsys)
    assert "warning" not in err


def test_a_read_only_config_dir_is_one_line_naming_cordon_toml_and_nothing_changes(tmp_path: Path) -> None:
    """The project directory is read-only (a read-only bind mount for root, whom modes do not stop)."""
    config = make_project(tmp_path / "proj", 6790)
    proj = config.parent
    before = config.read_bytes()
    command = f'"{TOOL}" route add ' + " ".join(OPENAI)
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root needs unshare for a read-only mount (directory modes do not stop root)")
        script = f'mount --bind "{proj}" "{proj}" && mount -o remount,bind,ro "{proj}" && cd "{proj}" && {command}'
        argv = ["unshare", "-m", "sh", "-c", script]
    else:
        proj.chmod(0o555)
        argv = ["sh", "-c", f'cd "{proj}" && {command}']
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    finally:
        proj.chmod(0o755)
    if "mount:" in done.stderr:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert lines[0].startswith(f"cordon: cannot write {config}: {proj} is not writable ("), lines
    assert lines[1].startswith(f"hint: nothing was changed; make {proj} writable")
    assert ".tmp" not in done.stderr and ".bak" not in done.stderr
    assert config.read_bytes() == before and sorted(p.name for p in proj.iterdir()) == ["cordon.toml"]


def test_ctrl_c_at_the_secret_prompt_says_interrupted(project: Path) -> None:
    """A real terminal: `cordon secret set` prompts without echo; Ctrl-C prints `cordon: interrupted`, exit 130."""
    assert cli.route_main(["add", *OPENAI]) == 0
    pid, fd = pty.fork()
    if pid == 0:  # the child: the real command on a real terminal
        os.execv(str(TOOL), [str(TOOL), "secret", "set", "openai"])
    output = b""
    deadline = time.monotonic() + 30
    while b"input hidden" not in output and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if ready:
            output += os.read(fd, 1024)
    assert b"input hidden" in output, output
    os.write(fd, b"\x03")  # Ctrl-C, as the terminal sends it
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 130, output
    assert b"cordon: interrupted" in output, output


def test_a_trust_setting_changed_with_cordon_config_is_approved(project: Path, tmp_path: Path, capsys) -> None:
    """`cordon config set` is a person at the CLI: the [tls] value it writes counts as approved; the same value
    written into the file by something else does not."""
    from cordon_config.approvals import approve, check_approved

    paths = resolve_scope(None, None, env=os.environ, cwd=project.parent)
    approve(paths, load_config(project))
    roots = tmp_path / "roots.pem"
    roots.write_text("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")  # parsed by the proxy, not here
    assert cli.config_main(["set", "tls.upstream_ca_file", str(roots)]) == 0
    assert check_approved(load_config(project), paths) == []
    project.write_text(project.read_text().replace(str(roots), str(tmp_path / "other.pem")))
    (tmp_path / "other.pem").write_text("x\n")
    assert [u.item.kind for u in check_approved(load_config(project), paths)] == ["settings"]


def test_an_upstream_ca_file_with_no_pem_certificate_is_refused_at_set_time(project: Path, tmp_path: Path,
                                                                          capsys) -> None:
    hostname = tmp_path / "hostname"
    hostname.write_text("devbox\n")
    before = project.read_text()
    assert cli.config_main(["set", "tls.upstream_ca_file", str(hostname)]) != 0
    err = capsys.readouterr().err
    assert f"{hostname} contains no PEM certificate" in err and len(err.splitlines()) <= 2, err
    assert project.read_text() == before
