"""cordon's Node register hook: shipped, copied into the scope, loaded through NODE_OPTIONS by a real Node.

That it routes fetch, https and a library's own agent through cordon and gets the key injected is proven by
`cordon doctor --runtimes` (cordon-doctor/tests/test_runtimes.py); here: loading, quoting, NO_PROXY, a proxy
that refuses, and no harm when no proxy is set.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_setup.nodehook import ensure_hook, hook_is_current, hook_path, hook_source, node_options
from cordon_setup.runner import merged_node_options

NODE = shutil.which("node")
needs_node = pytest.mark.skipif(NODE is None, reason="node is not installed (apt-get install nodejs)")

FETCH = """
fetch(process.argv[1]).then(async (r) => { console.log(r.status, await r.text()); })
  .catch((e) => { console.error(String(e.cause ? e.cause.message : e)); process.exit(1); });
"""
HTTP_GET = """
const http = require('http');
http.get(process.argv[1], {agent: new http.Agent({keepAlive: true})}, (res) => {
  let body = ''; res.on('data', (c) => body += c); res.on('end', () => { console.log(res.statusCode, body); process.exit(0); });
}).on('error', (e) => { console.error(e.message); process.exit(1); });
"""


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _Refuse(BaseHTTPRequestHandler):
    def do_CONNECT(self) -> None:
        self.send_response(407, "Proxy Authentication Required")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def _serve(handler: type[BaseHTTPRequestHandler]) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def hello() -> Iterator[int]:
    yield from _serve(_Hello)


@pytest.fixture
def refusing_proxy() -> Iterator[int]:
    yield from _serve(_Refuse)


@pytest.fixture
def scope(tmp_path: Path):  # type: ignore[no-untyped-def]
    return resolve_scope(None, None, env=os.environ, cwd=tmp_path)


def _node(script: str, url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    assert NODE is not None
    base = {"PATH": os.environ.get("PATH", ""), "HOME": os.environ.get("HOME", "")}
    return subprocess.run([NODE, "-e", script, url], env={**base, **env}, capture_output=True, text=True, timeout=60)


def test_the_scope_gets_a_copy_of_the_shipped_hook(scope) -> None:  # type: ignore[no-untyped-def]
    shipped = Path(__file__).parents[1] / "src" / "cordon_setup" / "node" / "cordon-register.cjs"
    assert hook_source() == shipped.read_bytes()
    assert not hook_is_current(scope)
    assert ensure_hook(scope) is True and hook_is_current(scope)
    assert stat.S_IMODE(hook_path(scope).stat().st_mode) == 0o644
    assert ensure_hook(scope) is False  # already current
    hook_path(scope).write_text("// older\n")
    assert ensure_hook(scope) is True and hook_path(scope).read_bytes() == hook_source()


def test_node_options_quotes_only_when_needed() -> None:
    assert node_options(Path("/a/b/cordon-register.cjs")) == "--require /a/b/cordon-register.cjs"
    assert node_options(Path('/my dir/"x"/h.cjs')) == '--require "/my dir/\\"x\\"/h.cjs"'


@needs_node
def test_node_loads_the_hook_from_a_path_with_a_space(tmp_path: Path) -> None:
    scope = resolve_scope(None, None, env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "my config")},
                          cwd=tmp_path)
    ensure_hook(scope)
    done = _node("process.exit(globalThis[Symbol.for('cordon.register')] ? 0 : 7)", "",
                 {"NODE_OPTIONS": node_options(hook_path(scope))})
    assert done.returncode == 0, done.stderr


@needs_node
@pytest.mark.parametrize("script", [FETCH, HTTP_GET], ids=["fetch", "http-own-agent"])
def test_without_a_proxy_nothing_changes(scope, hello: int, script: str) -> None:  # type: ignore[no-untyped-def]
    ensure_hook(scope)
    done = _node(script, f"http://127.0.0.1:{hello}/", {"NODE_OPTIONS": node_options(hook_path(scope))})
    assert done.returncode == 0 and done.stdout.split() == ["200", "hello"], done.stderr


@needs_node
@pytest.mark.parametrize("script", [FETCH, HTTP_GET], ids=["fetch", "http-own-agent"])
def test_no_proxy_hosts_are_reached_directly(scope, hello: int, script: str) -> None:  # type: ignore[no-untyped-def]
    ensure_hook(scope)
    with socket.socket() as dead:
        dead.bind(("127.0.0.1", 0))  # bound, not listening: a proxy there would refuse the connection
        proxy = f"http://u:p@127.0.0.1:{dead.getsockname()[1]}"
        env = {"NODE_OPTIONS": node_options(hook_path(scope)), "HTTP_PROXY": proxy, "HTTPS_PROXY": proxy,
               "NO_PROXY": "localhost,127.0.0.1,::1"}
        done = _node(script, f"http://127.0.0.1:{hello}/", env)
        assert done.returncode == 0 and done.stdout.split() == ["200", "hello"], done.stderr
        # and the same request without the exemption goes to the (dead) proxy: the hook is what routes it
        done = _node(script, f"http://127.0.0.1:{hello}/", {**env, "NO_PROXY": ""})
        assert done.returncode == 1 and "ECONNREFUSED" in done.stderr


@needs_node
@pytest.mark.parametrize("script", [FETCH, HTTP_GET], ids=["fetch", "http-own-agent"])
def test_a_refusing_proxy_is_reported(scope, hello: int, refusing_proxy: int, script: str) -> None:  # type: ignore[no-untyped-def]
    ensure_hook(scope)
    env = {"NODE_OPTIONS": node_options(hook_path(scope)), "HTTP_PROXY": f"http://127.0.0.1:{refusing_proxy}"}
    done = _node(script, f"http://api.example.invalid:{hello}/", env)
    assert done.returncode == 1
    assert "cordon hook: the proxy refused CONNECT api.example.invalid" in done.stderr
    assert "407" in done.stderr


def test_cordon_run_keeps_the_users_node_options() -> None:
    contract = {"NODE_OPTIONS": "--require /s/node/cordon-register.cjs", "HTTPS_PROXY": "http://p"}
    assert merged_node_options({"NODE_OPTIONS": "--max-old-space-size=4096"}, contract) == \
        "--require /s/node/cordon-register.cjs --max-old-space-size=4096"
    assert merged_node_options({"NODE_OPTIONS": contract["NODE_OPTIONS"]}, contract) == contract["NODE_OPTIONS"]
    assert merged_node_options({}, contract) == contract["NODE_OPTIONS"]
    assert merged_node_options({"NODE_OPTIONS": "--x"}, {}) is None


def test_cordon_env_restores_the_hook_or_leaves_node_options_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from cordon_setup.cli import env_main, setup_main

    monkeypatch.chdir(tmp_path)
    assert setup_main(["--yes"]) == 0
    scope = resolve_scope(None, None, env=os.environ, cwd=tmp_path)
    hook_path(scope).unlink()  # an older cordon set this scope up, or the file was removed
    capsys.readouterr()
    assert env_main(["--json"]) == 0
    assert json.loads(capsys.readouterr().out)["NODE_OPTIONS"] == node_options(hook_path(scope))
    assert hook_is_current(scope)  # put back before anything could load it
    shutil.rmtree(hook_path(scope).parent)
    hook_path(scope).parent.write_text("")  # the hook cannot be written there: NODE_OPTIONS is left out
    assert env_main(["--json"]) == 0
    env = json.loads(capsys.readouterr().out)
    assert "NODE_OPTIONS" not in env and "HTTPS_PROXY" in env
