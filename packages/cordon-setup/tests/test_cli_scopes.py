"""Setup and the env contract across scopes: a port per scope, settings as flags, a second scope only when asked,
nothing half done, and never a proxy URL without a token."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_config.tokens import TokenStore
from cordon_setup import cli
from cordon_setup.cli import env_main, run_main, service_main, setup_main

CORDON = Path(sys.executable).parent / "cordon"  # the installed umbrella, as a user runs it
TOOL = Path(sys.executable).parent / "cordon-setup"  # this member's own script (the same commands)


def listen(config: Path) -> int:
    return int(tomllib.loads(config.read_text())["listen"])


def paths_of(directory: Path):
    return resolve_scope(None, None, env=os.environ, cwd=directory)


@pytest.fixture
def two(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    a, b = tmp_path / "A", tmp_path / "B"
    a.mkdir()
    b.mkdir()
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    return a, b


def test_each_scope_gets_its_own_port_even_with_the_other_proxy_stopped(two, monkeypatch, capsys) -> None:
    a, b = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    monkeypatch.chdir(b)
    assert setup_main([]) == 0  # A's proxy is not running: its port is free, but it is A's
    assert listen(a / "cordon.toml") != listen(b / "cordon.toml")
    record = json.loads((paths_of(b).state_dir / "scope.json").read_text())
    assert record == {"config": str(b / "cordon.toml")}


def test_setup_port_changes_the_port_and_the_integration_files_follow(two, monkeypatch, capsys) -> None:
    a, b = two
    monkeypatch.chdir(a)
    assert setup_main(["codex"]) == 0
    monkeypatch.chdir(b)
    assert setup_main([]) == 0
    capsys.readouterr()
    code = setup_main(["--port", str(listen(a / "cordon.toml"))])
    err = capsys.readouterr().err
    assert code == 1 and f"is already the port of another cordon scope ({a / 'cordon.toml'})" in err
    monkeypatch.chdir(a)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert setup_main(["--port", str(port)]) == 0
    out = capsys.readouterr().out
    assert listen(a / "cordon.toml") == port and f"changed listen in {a / 'cordon.toml'}" in out
    assert f"@127.0.0.1:{port}'" in (a / ".codex" / ".env").read_text()  # codex follows the new port
    assert f"rewrote {a / '.codex' / '.env'} (port {port})" in out


def test_settings_as_flags_for_a_new_and_an_existing_config(two, monkeypatch, capsys, tmp_path) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    roots = tmp_path / "roots.pem"
    roots.write_text("-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----\n")  # parsed by the proxy, not here
    assert setup_main(["--secret-ttl", "30", "--dry-run"]) == 0
    assert not (a / "cordon.toml").exists() and "secret_ttl = 30" in capsys.readouterr().out
    assert setup_main(["--secret-ttl", "30"]) == 0
    doc = tomllib.loads((a / "cordon.toml").read_text())
    assert doc["secret_ttl"] == 30
    assert setup_main(["--upstream-ca-file", str(roots), "--secret-ttl", "0"]) == 0
    doc = tomllib.loads((a / "cordon.toml").read_text())
    assert doc["tls"]["upstream_ca_file"] == str(roots) and doc["secret_ttl"] == 0
    capsys.readouterr()
    assert setup_main(["--upstream-ca-file", str(tmp_path / "missing.pem")]) == 2
    assert "--upstream-ca-file: no such file" in capsys.readouterr().err
    hostname = tmp_path / "hostname"
    hostname.write_text("devbox\n")
    assert setup_main(["--upstream-ca-file", str(hostname)]) == 2
    assert f"--upstream-ca-file: {hostname} contains no PEM certificate" in capsys.readouterr().err
    assert tomllib.loads((a / "cordon.toml").read_text())["tls"]["upstream_ca_file"] == str(roots)
    with pytest.raises(SystemExit):
        setup_main(["--port", "70000"])
    assert "port 70000 is not between 1 and 65535" in capsys.readouterr().err


def test_setup_in_a_subdirectory_asks_before_a_second_scope(two, monkeypatch, capsys) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    sub = a / "src"
    sub.mkdir()
    monkeypatch.chdir(sub)
    capsys.readouterr()
    assert setup_main(["codex", "--dry-run"]) == 2  # not a terminal: refuse, naming both flags
    err = capsys.readouterr().err
    assert f"{a / 'cordon.toml'} (in a parent directory) already covers {sub}: set up which scope?" in err
    assert f"--config {a / 'cordon.toml'}" in err and "--new-scope" in err
    assert not (sub / "cordon.toml").exists() and not (sub / ".codex").exists()

    assert setup_main(["--config", str(a / "cordon.toml")]) == 0  # the project above, chosen explicitly
    assert not (sub / "cordon.toml").exists()
    assert setup_main(["--new-scope"]) == 0
    assert (sub / "cordon.toml").exists() and listen(sub / "cordon.toml") != listen(a / "cordon.toml")
    assert paths_of(sub).state_dir != paths_of(a).state_dir


def test_the_question_on_a_terminal(two, monkeypatch, capsys) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    sub = a / "src"
    sub.mkdir()
    monkeypatch.chdir(sub)
    monkeypatch.setattr(cli, "_isatty", lambda stream: True)
    monkeypatch.setattr(sys, "stdin", io.StringIO("p\n"))
    capsys.readouterr()
    assert setup_main(["--yes"]) == 0  # p: that project's scope
    captured = capsys.readouterr()
    assert "[n] create a second scope here" in captured.out and not (sub / "cordon.toml").exists()
    assert captured.err == f"cordon: using {a / 'cordon.toml'}\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO("q\n"))
    assert setup_main(["--yes"]) == 2 and "nothing was set up" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.StringIO("n\n"))
    assert setup_main(["--yes"]) == 0 and (sub / "cordon.toml").exists()


def test_a_missing_or_unknown_token_is_an_error_never_a_url_without_one(two, monkeypatch, capsys) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    capsys.readouterr()
    assert env_main(["--token", "nope"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""  # nothing an `eval` could pick up
    assert "no proxy token named 'nope'" in captured.err and "tokens: default" in captured.err
    assert run_main(["--token", "nope", "--", sys.executable, "-c", "pass"]) == 1
    assert "no proxy token named 'nope'" in capsys.readouterr().err
    TokenStore.open(paths_of(a).tokens_path).revoke("default")
    assert env_main([]) == 1
    err = capsys.readouterr().err
    assert "no proxy token named 'default'" in err and "hint: create it again with: cordon setup" in err
    assert setup_main([]) == 0  # what the hint says
    capsys.readouterr()
    assert env_main([]) == 0 and "@127.0.0.1:" in capsys.readouterr().out


def test_the_commands_exit_non_zero_as_processes(two, monkeypatch) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    for argv in (["env", "--token", "nope"], ["run", "--token", "nope", "--", "true"]):
        done = subprocess.run([str(TOOL), *argv], capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stdout == "" and "no proxy token named 'nope'" in done.stderr


def test_setup_through_a_pipe_closed_early_still_sets_up(two, monkeypatch) -> None:
    """`cordon setup codex | head -1`: the reader goes away after one line; setup finishes anyway."""
    if not CORDON.exists():
        pytest.skip("the `cordon` umbrella is not installed here (an isolated member run): it is what keeps "
                    "a command going when its reader leaves")
    a, _ = two
    done = subprocess.run(f'"{CORDON}" setup codex | head -1', shell=True, cwd=a, capture_output=True,
                          text=True, timeout=120, executable="/bin/bash")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 1, done.stderr
    assert "Broken pipe" not in done.stderr and done.stderr == ""
    assert (a / ".codex" / ".env").exists() and (a / ".codex" / "config.toml").exists()
    status = subprocess.run(f'set -o pipefail; "{CORDON}" setup codex | head -1', shell=True, cwd=a,
                            capture_output=True, text=True, timeout=120, executable="/bin/bash")
    assert status.returncode == 0  # setup itself exits 0


def test_a_read_only_project_fails_before_anything_is_created(tmp_path: Path) -> None:
    proj = tmp_path / "ro"
    proj.mkdir()
    state = paths_of(proj).state_dir
    if os.geteuid() == 0:
        if shutil.which("unshare") is None:
            pytest.skip("root needs unshare for a read-only mount (directory modes do not stop root)")
        script = (f'mount --bind "{proj}" "{proj}" && mount -o remount,bind,ro "{proj}" && cd "{proj}" && '
                  f'"{TOOL}" setup codex')
        argv = ["unshare", "-m", "sh", "-c", script]
    else:
        proj.chmod(0o555)
        argv = ["sh", "-c", f'cd "{proj}" && "{TOOL}" setup codex']
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    finally:
        proj.chmod(0o755)
    if "mount:" in done.stderr:
        pytest.skip(f"cannot make a read-only mount here: {done.stderr.strip()}")
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and lines[0].startswith(f"cordon: cannot write {proj / 'cordon.toml'}: {proj} is "
                                                        "not writable ("), done.stderr
    assert lines[1].startswith("hint: nothing was changed") and ".tmp" not in done.stderr
    assert not state.exists() and list(proj.iterdir()) == []  # no CA, no tokens, no agent files: not half done


def test_service_install_dry_run_prints_the_unit_and_writes_nothing(two, monkeypatch, capsys) -> None:
    a, _ = two
    monkeypatch.chdir(a)
    assert setup_main([]) == 0
    capsys.readouterr()
    assert service_main(["install", "--dry-run"]) == 0
    out = capsys.readouterr().out
    log = paths_of(a).state_dir / "proxy.log"
    assert out.startswith("# ") and "(dry run: nothing written or started)" in out.splitlines()[0]
    assert "ExecStart=" in out or "<plist" in out
    assert str(log) in out and "--log-file" in out  # the service logs where `cordon logs` looks
    unit = Path(out.splitlines()[0][2:].split("  ")[0])
    assert not unit.exists()
