"""The five commands through their entry functions, as `cordon <cmd>` calls them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cordon_setup.cli import (
    build_parser,
    env_main,
    integration_main,
    main,
    run_main,
    service_main,
    setup_main,
)


@pytest.fixture
def project(tmp_path, monkeypatch):
    path = tmp_path / "my proj"
    path.mkdir()
    monkeypatch.chdir(path)
    return path


@pytest.mark.parametrize("fn", [setup_main, integration_main, env_main, run_main, service_main])
def test_help_has_examples(fn, capsys):
    with pytest.raises(SystemExit) as info:
        fn(["--help"], prog="cordon x")
    assert info.value.code == 0
    assert "examples:" in capsys.readouterr().out


def test_setup_codex_then_again_then_disable(project, capsys):
    assert setup_main(["codex"]) == 0
    out = capsys.readouterr().out
    assert f"created {project / '.codex' / '.env'}" in out
    assert 'export CODEX_HOME="$PWD/.codex"' in out
    assert "codex login" in out and "dummy-replaced-by-cordon" in out
    assert (
        "cordon route add --name openai --host api.openai.com --auth-type header --header-name Authorization "
        "--scheme Bearer --source keyring --account openai"
    ) in out
    assert "cordon secret set openai" in out and "cordon start" in out
    assert setup_main(["codex"]) == 0
    assert "nothing to change" in capsys.readouterr().out
    assert integration_main(["list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["codex"]
    assert integration_main(["disable", "codex"]) == 0
    out = capsys.readouterr().out
    assert f"removed {project / '.codex' / '.env'}" in out and "revoked the proxy token 'codex'" in out
    assert not (project / ".codex").exists()


def test_dry_run_prints_diffs_and_masks_the_token(project, capsys):
    assert setup_main(["claude-code", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+++ b" + str(project / ".claude" / "settings.local.json") in out
    assert "<token:claude-code>" in out and "would create the cordon CA" in out
    assert "integrations/claude-code.json" in out  # the manifest that `integration disable` will use
    assert out.rstrip().endswith("dry run: nothing was written")
    assert list(project.iterdir()) == []


def test_setup_user_scope_claude_code_next_steps(project, capsys):
    assert setup_main(["claude-code", "--scope", "user", "--yes"]) == 0
    out = capsys.readouterr().out
    assert (
        "cordon route add --scope user --name anthropic --host api.anthropic.com --auth-type header "
        "--header-name x-api-key --source keyring --account anthropic"
    ) in out
    assert "--scheme" not in out
    assert (Path(os.environ["HOME"]) / ".claude" / "settings.json").exists()


def test_env_formats(project, capsys):
    assert env_main([]) == 1
    assert "no cordon.toml in " in capsys.readouterr().err
    assert setup_main([]) == 0
    capsys.readouterr()
    assert env_main(["--format", "json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert env["HTTPS_PROXY"].startswith("http://my%20proj-") and "@127.0.0.1:" in env["HTTPS_PROXY"]
    assert env_main([]) == 0
    shell = capsys.readouterr().out
    printed = subprocess.run(
        ["sh", "-c", shell + 'printf %s "$SSL_CERT_FILE"'],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    assert printed == env["SSL_CERT_FILE"] and " " in printed


def test_env_listener_prints_the_postgresql_client_side(project, capsys):
    assert setup_main([]) == 0
    capsys.readouterr()
    config = project / "cordon.toml"
    config.write_text(config.read_text() + '\n[[listeners]]\nname = "prod-db"\nport = 15432\nupstream = "db.test"\n'
                      '[listeners.auth]\ntype = "password"\nusername = "app_user"\n[listeners.auth.secret]\n'
                      'source = "env"\nvar = "PW"\n')
    assert env_main(["--listener", "prod-db", "--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    from cordon_config.scope import resolve_scope
    from cordon_config.tokens import TokenStore

    token = TokenStore.load(resolve_scope(None, None, env=os.environ, cwd=project).tokens_path).value("default")
    assert env == {"PGHOST": "127.0.0.1", "PGPORT": "15432", "PGUSER": "app_user", "PGPASSWORD": token}
    assert env_main(["--listener", "prod-db"]) == 0
    assert "export PGUSER='app_user'\nexport PGPASSWORD=" in capsys.readouterr().out
    assert env_main(["--listener", "nope"]) == 1
    err = capsys.readouterr().err
    assert "no listener named 'nope'" in err and "prod-db" in err


def test_bad_input_is_one_line_and_exit_2(project, capsys):
    with pytest.raises(SystemExit) as info:
        setup_main(["codex", "--scope", "user", "--config", "x.toml"])
    assert info.value.code == 2
    assert setup_main(["cursor"]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[-1].startswith("cordon: unknown integration 'cursor'")
    assert integration_main(["disable", "codex"]) == 1
    assert "not set up" in capsys.readouterr().err
    assert run_main(["--"]) == 2


def test_broken_settings_json_is_reported_cleanly(project, capsys):
    (project / ".claude").mkdir()
    (project / ".claude" / "settings.local.json").write_text('{"env": ')
    assert setup_main(["claude-code"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cordon: ") and "not valid JSON" in err and "Traceback" not in err


def test_run_passes_env_and_exit_code_through_an_already_healthy_proxy(project, capsys, tmp_path):
    assert setup_main([]) == 0
    capsys.readouterr()
    # a stand-in proxy answering /health on the configured port with this scope's identity proof (setup made
    # the key), so `run` starts none
    from cordon_config.identity import health_answer, load_key
    from cordon_config.scope import resolve_scope

    port = int(re.search(r"listen = (\d+)", (project / "cordon.toml").read_text()).group(1))
    key = load_key(resolve_scope(None, None, env=dict(os.environ), cwd=project))

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(health_answer(key, self.path.partition("?")[2], {"pid": os.getpid()})).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    try:
        server = HTTPServer(("127.0.0.1", port), Health)
    except OSError:
        pytest.skip(f"port {port} is busy")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        out = tmp_path / "seen"
        code = run_main(
            [
                "--",
                sys.executable,
                "-c",
                f"import os; open({str(out)!r}, 'w').write(os.environ['HTTPS_PROXY']); raise SystemExit(5)",
            ]
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert code == 5 and out.read_text().endswith(f"@127.0.0.1:{port}")


def test_cordon_setup_main_dispatches(project, capsys):
    with pytest.raises(SystemExit):
        main(["env", "--help"])
    assert "cordon-setup env" in capsys.readouterr().out
    assert build_parser().prog == "cordon-setup"


def test_next_steps_skip_the_route_when_cordon_toml_has_it(project, capsys):
    assert setup_main(["codex"]) == 0
    capsys.readouterr()
    with open(project / "cordon.toml", "a") as handle:
        handle.write('\n[[routes]]\nname = "oai"\n[routes.match]\nhost = "api.openai.com"\n')
    assert setup_main(["codex"]) == 0
    out = capsys.readouterr().out
    assert "cordon.toml already routes api.openai.com: route 'oai'" in out and "cordon route add" not in out


def test_disable_dry_run_shows_the_diff_without_the_token(project, capsys):
    from cordon_config.scope import resolve_scope
    from cordon_setup.base import token_value

    assert setup_main(["codex"]) == 0
    capsys.readouterr()
    assert integration_main(["disable", "codex", "--dry-run"]) == 0
    out = capsys.readouterr().out
    token = token_value(resolve_scope(None, None, env=os.environ, cwd=project), "codex")
    assert token and token not in out and "<token:codex>" in out and "+++ /dev/null" in out
    assert (project / ".codex" / ".env").exists()


@pytest.mark.parametrize(("answer", "expected"), [("\n", True), ("y\n", True), ("n\n", False), ("", False)])
def test_tty_confirmation_answers(project, monkeypatch, capsys, answer, expected):
    import io

    from cordon_config.scope import resolve_scope
    from cordon_setup.cli import _confirm_on_tty
    from cordon_setup.setup_flow import run_setup

    (project / ".codex").mkdir()
    (project / ".codex" / ".env").write_text("A=1\n")
    paths = resolve_scope(None, None, env=os.environ, cwd=project)
    outcome = run_setup(
        paths, "codex", environ=os.environ, cwd=project, dry_run=True, progress=lambda _: None
    )
    monkeypatch.setattr("sys.stdin", io.StringIO(answer))
    assert _confirm_on_tty(outcome.plan, outcome.masks) is expected
    out = capsys.readouterr().out
    assert "+++ b" in out and "[Y/n]" in out and "<token:codex>" in out
