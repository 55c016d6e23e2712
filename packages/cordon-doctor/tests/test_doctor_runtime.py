"""Doctor checks on what runs (secrets, port, service, integrations, CODEX_HOME): break it, assert fail + fix."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cordon_config.identity import config_digest, ensure_key, health_answer
from cordon_testing.doctor import doctor, line_and_fix

ENV_ROUTE = ('[[routes]]\nname = "api"\n[routes.match]\nhost = "api.test"\n[routes.auth]\ntype = "header"\n'
             'header_name = "Authorization"\nscheme = "Bearer"\n[routes.auth.secret]\nsource = "env"\n'
             'var = "API_TEST_KEY"\n')


def set_listen(paths, port: int) -> None:
    text = re.sub(r"(?m)^listen = \d+", f"listen = {port}", paths.config_path.read_text())
    paths.config_path.write_text(text)


# -- secrets ------------------------------------------------------------------------------------------------
def test_env_secret_unset_then_set(project, route, capsys, monkeypatch) -> None:
    route(project, ENV_ROUTE)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and line == "FAIL route.api.secret: env: environment variable API_TEST_KEY is not set"
    assert fix is not None and fix.startswith("fix: export API_TEST_KEY=...")
    monkeypatch.setenv("API_TEST_KEY", "sk-live-do-not-print-0123456789")
    code, out = doctor(capsys)
    assert line_and_fix(out, "route.api.secret")[0].startswith("ok")
    assert "sk-live-do-not-print" not in out


def test_keyring_missing_backend_names_secret_service_and_alternatives(project, route, capsys, monkeypatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    route(project, ENV_ROUTE.replace('source = "env"\nvar = "API_TEST_KEY"', 'source = "keyring"\naccount = "api"'))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and line.startswith("FAIL route.api.secret: keyring: no keyring backend")
    assert fix is not None and "Secret Service" in fix
    assert "--source env --var API_API_KEY" in fix and "source = \"file\"" in fix and "source = \"command\"" in fix


def test_file_secret_group_readable(project, route, capsys, tmp_path) -> None:
    secret = tmp_path / "key.txt"
    secret.write_text("sk-file-0123456789abcdef\n")
    os.chmod(secret, 0o644)
    route(project, ENV_ROUTE.replace('source = "env"\nvar = "API_TEST_KEY"', f'source = "file"\npath = "{secret}"'))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and line.startswith("FAIL route.api.secret: file:") and "0644" in line
    assert fix == f"fix: put the secret in {secret} and chmod 600 {secret}"
    assert "sk-file" not in out


def test_command_secret_failing(project, route, capsys) -> None:
    route(project, ENV_ROUTE.replace('source = "env"\nvar = "API_TEST_KEY"', 'source = "command"\nargv = ["false"]'))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and line.startswith("FAIL route.api.secret: command:")
    assert fix == "fix: run the command yourself to see why it fails: false"


def test_op_not_installed(project, route, capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    route(project, ENV_ROUTE.replace('source = "env"\nvar = "API_TEST_KEY"',
                                     'source = "1password"\nvault = "v"\nitem = "i"\nfield = "f"'))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and "`op` is not installed" in line
    assert fix is not None and fix.startswith("fix: install the 1Password CLI")


# -- port ---------------------------------------------------------------------------------------------------
def test_port_taken_by_something_else(project, capsys) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        port = sock.getsockname()[1]
        set_listen(project, port)
        code, out = doctor(capsys)
    line, fix = line_and_fix(out, "port")
    assert code == 1
    assert line.startswith(f"FAIL port: port {port} is held by something that is not this scope's cordon "
                           f"(pid {os.getpid()}: ")
    assert fix is not None and str(project.config_path) in fix


def _health_server(answer) -> ThreadingHTTPServer:
    """A real listener answering /health with ``answer(query)`` (a JSON document)."""

    class Health(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            body = json.dumps(answer(self.path.partition("?")[2])).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_squatter_answering_like_cordon_is_not_taken_for_it(project, capsys) -> None:
    server = _health_server(lambda query: {"status": "ok", "version": "9.9", "routes": 0})
    try:
        set_listen(project, server.server_address[1])
        code, out = doctor(capsys)
    finally:
        server.shutdown()
        server.server_close()
    line, _ = line_and_fix(out, "port")
    assert code == 1 and line.startswith("FAIL port: port ") and "is held by something that is not this scope" in line


def test_port_with_this_scopes_cordon_then_a_stale_config(project, capsys) -> None:
    key = ensure_key(project)
    digest: dict[str, str] = {}
    server = _health_server(lambda query: health_answer(key, query, {
        "pid": 4242, "version": "9.9", "routes": 0, "config_digest": digest["value"]}))
    try:
        set_listen(project, server.server_address[1])
        digest["value"] = config_digest(project.config_path.read_bytes())
        _code, out = doctor(capsys)
        line, _ = line_and_fix(out, "port")
        assert line.startswith("ok   port: cordon 9.9 (pid 4242) is running")
        assert "proxy.config" not in out
        project.config_path.write_text(project.config_path.read_text() + "\n# edited after the proxy started\n")
        _code, out = doctor(capsys)
    finally:
        server.shutdown()
        server.server_close()
    line, fix = line_and_fix(out, "proxy.config")
    assert line.startswith("warn proxy.config: the running proxy (pid 4242) uses an older version of ")
    assert fix is not None and "cordon reload" in fix


def test_another_scopes_cordon_on_the_port_is_named(project, capsys, tmp_path) -> None:
    from cordon_config.scope import resolve_scope
    from cordon_config.scopes import record_scope

    other = resolve_scope(None, tmp_path / "other" / "cordon.toml", env=dict(os.environ), cwd=tmp_path)
    other_key = ensure_key(other)
    record_scope(other)
    server = _health_server(lambda query: health_answer(other_key, query, {"pid": 1}))
    try:
        set_listen(project, server.server_address[1])
        code, out = doctor(capsys)
    finally:
        server.shutdown()
        server.server_close()
    line, fix = line_and_fix(out, "port")
    assert code == 1
    assert line == f"FAIL port: another scope's cordon ({other.config_path}) holds port {server.server_address[1]}"
    assert fix is not None and f"cordon stop --config {other.config_path}" in fix


# -- service ------------------------------------------------------------------------------------------------
def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, active: str) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    script = bindir / "systemctl"
    script.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        "  show-environment) echo PATH=/usr/bin; exit 0;;\n"
        f'  is-active) echo {active}; [ "{active}" = active ] && exit 0 || exit 3;;\n'
        "esac\nexit 0\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def unit_file(project) -> Path:
    return Path(os.environ["XDG_CONFIG_HOME"]) / "systemd" / "user" / f"cordon-{project.namespace}.service"


def test_service_not_installed(project, capsys, tmp_path, monkeypatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, "inactive")
    _code, out = doctor(capsys)
    line, fix = line_and_fix(out, "service")
    assert line.startswith("warn service: no background service for this scope")
    assert fix == "fix: cordon service install"


def test_service_installed_but_stopped(project, capsys, tmp_path, monkeypatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, "failed")
    unit = unit_file(project)
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Service]\nExecStart=/usr/bin/cordon start --config {project.config_path}\n")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "service")
    assert code == 1 and line == f"FAIL service: cordon-{project.namespace}.service is installed but not running"
    assert fix is not None and fix.startswith(f"fix: systemctl --user restart cordon-{project.namespace}.service")


def test_service_running(project, capsys, tmp_path, monkeypatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, "active")
    unit = unit_file(project)
    unit.parent.mkdir(parents=True)
    unit.write_text(f"[Service]\nExecStart=/usr/bin/cordon start --config {project.config_path}\n")
    _, out = doctor(capsys)
    assert line_and_fix(out, "service")[0].startswith("ok   service:")


def test_service_for_another_config(project, capsys, tmp_path, monkeypatch) -> None:
    fake_systemctl(tmp_path, monkeypatch, "active")
    unit = unit_file(project)
    unit.parent.mkdir(parents=True)
    unit.write_text("[Service]\nExecStart=/usr/bin/cordon start --config /elsewhere/cordon.toml\n")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "service")
    assert code == 1 and line.startswith("FAIL service:") and "does not run this scope's config" in line
    assert fix is not None and fix.startswith("fix: cordon service install")


# -- integrations and CODEX_HOME -------------------------------------------------------------------------------
def test_integration_stale_after_port_change_and_codex_home(project, capsys, monkeypatch) -> None:
    from cordon_setup.cli import setup_main

    assert setup_main(["codex", "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    monkeypatch.setenv("CODEX_HOME", str(project.config_path.parent / ".codex"))
    code, out = doctor(capsys)
    line, _ = line_and_fix(out, "integration.codex")
    assert line.startswith("ok   integration.codex:"), out
    assert line_and_fix(out, "codex.home")[0].startswith("ok")
    set_listen(project, 6999)
    monkeypatch.delenv("CODEX_HOME")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "integration.codex")
    assert code == 1 and line.startswith("FAIL integration.codex: stale") and ".codex/.env" in line
    assert fix == "fix: cordon setup codex"
    line, fix = line_and_fix(out, "codex.home")
    assert line.startswith("warn codex.home: CODEX_HOME does not point at")
    assert fix is not None and fix.startswith(f'fix: export CODEX_HOME="{project.config_path.parent / ".codex"}"')


def test_integration_stale_after_token_rotation(project, capsys) -> None:
    from cordon_config.tokens import TokenStore
    from cordon_setup.cli import setup_main

    assert setup_main(["claude-code", "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    store = TokenStore.load(project.tokens_path)
    assert store is not None
    store.rotate("claude-code")  # the store alone: integration files are not rewritten
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "integration.claude-code")
    assert code == 1 and line.startswith("FAIL integration.claude-code: stale")
    assert fix == "fix: cordon setup claude-code"


def test_integration_stale_bundle_path(project, capsys) -> None:
    from cordon_setup.cli import setup_main

    assert setup_main(["codex", "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    dotenv = project.config_path.parent / ".codex" / ".env"
    text = dotenv.read_text()
    assert str(project.combined_bundle) in text
    dotenv.write_text(text.replace(str(project.combined_bundle), "/gone/cordon/certs/combined-ca.pem"))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "integration.codex")
    assert code == 1 and line == f"FAIL integration.codex: stale (port, token, CA bundle or routed hosts changed since setup): {dotenv}"
    assert fix == "fix: cordon setup codex"


def test_integration_stale_after_ca_moved(project, capsys, tmp_path) -> None:
    from cordon_setup.cli import setup_main

    assert setup_main(["codex", "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    moved = tmp_path / "moved-ca"
    moved.mkdir(mode=0o700)
    cert, key = moved / "ca-cert.pem", moved / "ca-key.pem"
    project.ca_cert.rename(cert)
    project.ca_key.rename(key)
    text = project.config_path.read_text()
    text = re.sub(r'(?m)^ca_cert_path = .*$', f'ca_cert_path = "{cert}"', text)
    text = re.sub(r'(?m)^ca_key_path = .*$', f'ca_key_path = "{key}"', text)
    project.config_path.write_text(text)
    code, out = doctor(capsys)
    assert line_and_fix(out, "ca.valid")[0].startswith("ok"), out
    line, fix = line_and_fix(out, "integration.codex")
    assert code == 1 and line.startswith("FAIL integration.codex: stale") and ".codex/.env" in line, out
    assert fix == "fix: cordon setup codex"


@pytest.mark.parametrize("name", ["gemini-cli", "opencode", "aider"])
def test_new_integrations_checked_then_stale_after_port_change(project, capsys, name) -> None:
    from cordon_setup.cli import setup_main

    assert setup_main([name, "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    code, out = doctor(capsys)
    assert line_and_fix(out, f"integration.{name}")[0].startswith(f"ok   integration.{name}:"), out
    set_listen(project, 6998)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, f"integration.{name}")
    if name == "opencode":  # its file holds only the dummy key (no port): still current
        assert line.startswith("ok"), out
    else:
        assert code == 1 and line.startswith(f"FAIL integration.{name}: stale"), out
        assert fix == f"fix: cordon setup {name}"


def test_hermes_scope_checked_with_its_config_and_fix_without_flags(tmp_path, capsys, monkeypatch) -> None:
    from cordon_config.tokens import TokenStore
    from cordon_setup.cli import setup_main

    monkeypatch.chdir(tmp_path)
    assert setup_main(["hermes", "--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    config = Path(os.environ["HOME"]) / ".hermes" / "cordon.toml"
    code, out = doctor(capsys, "--config", str(config))
    assert line_and_fix(out, "integration.hermes")[0].startswith("ok   integration.hermes:"), out
    from cordon_config.scope import resolve_scope

    paths = resolve_scope(None, config, env=os.environ, cwd=tmp_path)
    store = TokenStore.load(paths.tokens_path)
    assert store is not None
    store.rotate("hermes")
    code, out = doctor(capsys, "--config", str(config))
    line, fix = line_and_fix(out, "integration.hermes")
    assert code == 1 and line.startswith("FAIL integration.hermes: stale") and ".hermes/.env" in line
    assert fix == "fix: cordon setup hermes"


def test_node_hook_missing_then_restored(project, capsys) -> None:
    from cordon_setup.cli import setup_main
    from cordon_setup.nodehook import hook_path

    assert setup_main(["--yes"], prog="cordon setup") == 0
    capsys.readouterr()
    code, out = doctor(capsys)
    assert line_and_fix(out, "node-hook")[0].startswith("ok   node-hook:"), out
    hook_path(project).write_text("// an older hook\n")
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "node-hook")
    assert line.startswith("warn node-hook:") and "another version of cordon" in line
    hook_path(project).unlink()
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "node-hook")
    assert code == 1 and line.startswith("FAIL node-hook:") and "cannot start" in line
    assert fix == "fix: cordon setup"
    assert setup_main(["--yes"], prog="cordon setup") == 0
    assert "wrote the Node register hook" in capsys.readouterr().out
    code, out = doctor(capsys)
    assert line_and_fix(out, "node-hook")[0].startswith("ok")


def test_op_not_signed_in(project, route, capsys, monkeypatch, tmp_path) -> None:
    bindir = tmp_path / "opbin"
    bindir.mkdir()
    op = bindir / "op"
    op.write_text("#!/bin/sh\necho '[ERROR] You are not currently signed in.' >&2\nexit 1\n")
    op.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    route(project, ENV_ROUTE.replace('source = "env"\nvar = "API_TEST_KEY"',
                                     'source = "1password"\nvault = "v"\nitem = "i"\nfield = "f"'))
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, "route.api.secret")
    assert code == 1 and "not signed in" in line
    assert fix is not None and fix.startswith("fix: eval $(op signin)")


# -- agent files holding the token ----------------------------------------------------------------------------
@pytest.mark.parametrize("integration,files", [
    ("codex", [".codex/.env", ".codex/config.toml"]),
    ("claude-code", [".claude/settings.local.json"]),
])
def test_integration_file_readable_by_others_fails_with_the_chmod(project, capsys, integration, files) -> None:
    from cordon_setup.cli import setup_main

    assert setup_main([integration, "--yes"]) == 0
    capsys.readouterr()
    proj = project.config_path.parent
    for name in files:
        (proj / name).chmod(0o644)
    code, out = doctor(capsys)
    line, fix = line_and_fix(out, f"integration.{integration}.mode")
    assert code == 1 and line.startswith(f"FAIL integration.{integration}.mode: {proj / files[0]} (0644)")
    assert "hold(s) the proxy token but other users may read it" in line
    assert fix == "fix: chmod 600 " + " ".join(str(proj / name) for name in files)
    for name in files:
        (proj / name).chmod(0o600)
    code, out = doctor(capsys)
    assert f"integration.{integration}.mode" not in out
