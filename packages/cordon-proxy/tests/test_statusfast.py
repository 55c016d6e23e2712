"""`cordon status`'s fast path says exactly what the full command says, from a cache that follows every change."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
from contextlib import redirect_stdout
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from cordon_config.scope import resolve_scope
from cordon_proxy import statusfast
from cordon_proxy.cli import status_main
from cordon_proxy.statusfast import fast_status, parse_args
from cordon_testing.proxy import ProxyProcess, approve_as_user, free_port, write_config


@pytest.fixture(autouse=True)
def no_racy_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statusfast, "RACY_SECONDS", 0.0)


@pytest.mark.parametrize(("args", "expected"), [
    ([], {}),
    (["-q"], {"quiet": "1"}),
    (["--json", "-c", "x.toml"], {"json": "1", "config": "x.toml"}),
    (["--scope=user", "--quiet"], {"scope": "user", "quiet": "1"}),
])
def test_plain_arguments_are_understood(args: list[str], expected: dict[str, str]) -> None:
    assert parse_args(args) == expected


@pytest.mark.parametrize("args", [["--help"], ["-q", "--json"], ["-q", "-q"], ["--scope", "team"], ["-c"],
                                  ["--scope", "user", "-c", "x"], ["--verbose"], ["-qc", "x"]])
def test_anything_else_goes_to_the_full_command(args: list[str]) -> None:
    assert parse_args(args) is None


def full(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        code = status_main(args)
    return code, out.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proj").mkdir()
    config = write_config(tmp_path / "proj", free_port(), [])
    resolve_scope(None, None, env=os.environ, cwd=config.parent).state_dir.mkdir(parents=True)
    monkeypatch.chdir(config.parent)
    return config


def fast(args: list[str]) -> tuple[int, str] | None:
    return fast_status(args, os.environ, os.getcwd())


@pytest.mark.parametrize("args", [[], ["-q"], ["--json"], ["-c", "cordon.toml"]])
def test_not_running_the_cache_gives_what_the_full_command_printed(project: Path, args: list[str]) -> None:
    assert fast(args) is None  # nothing cached yet
    printed = full(args)
    assert printed[0] == 1
    assert fast(args) == printed


def test_running_the_same_answer_and_an_edit_makes_the_cache_stale(project: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    port = int(project.read_text().split("listen = ", 1)[1].split("\n", 1)[0])
    home = project.parent / "home"  # the proxy's (ProxyProcess): the status client must see the same scope
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    approve_as_user(project, dict(os.environ))
    with ProxyProcess(project, port, env=dict(os.environ)):
        for args in ([], ["--json"], ["-q"]):
            printed = full(args)
            assert printed[0] == 0
            assert fast(args) == printed, args
        code = ("import sys\nfrom cordon_proxy.statusfast import main\nrc = main([])\n"
                "heavy = sorted({'argparse', 'tomllib', 'json', 're', 'hashlib', 'cordon_proxy.cli'} & set(sys.modules))\n"
                "sys.stderr.write(repr(heavy))\nsys.exit(rc)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30,
                              cwd=project.parent)
        assert done.returncode == 0 and "is running" in done.stdout and done.stderr == "[]"
    project.write_text(project.read_text().replace(f"listen = {port}", f"listen = {port + 1}"))
    assert fast([]) is None  # a changed cordon.toml is never answered from the cache
    assert f":{port + 1}\n" in full([])[1]


def test_something_else_on_the_port_goes_to_the_full_command(project: Path) -> None:
    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status": "ok", "but": "not cordon"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    full([])  # cache the port
    port = int(project.read_text().split("listen = ", 1)[1].split("\n", 1)[0])
    server = HTTPServer(("127.0.0.1", port), Other)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert fast(["-q"]) is None  # not the proxy's own answer: the full command decides
    finally:
        server.shutdown()
        server.server_close()


def test_the_entry_point_answers_without_argparse_or_the_config_parser(project: Path) -> None:
    full([])
    code = ("import sys\nfrom cordon_proxy.statusfast import main\nrc = main(['-q'])\n"
            "heavy = sorted({'argparse', 'tomllib', 'json', 'socket', 'cordon_proxy.cli', 'http.client'} "
            "& set(sys.modules))\nsys.stderr.write(repr(heavy))\nsys.exit(rc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1 and done.stderr == "[]"


def test_a_config_changed_a_moment_ago_is_not_cached(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statusfast, "RACY_SECONDS", 3600.0)
    full([])
    assert fast([]) is None


def test_a_squatter_answering_like_cordon_with_a_forged_proof_goes_to_the_full_command(project: Path) -> None:
    """The fast path trusts only a proof made with the scope's key (SECURITY.md §E rule 3)."""
    from cordon_config.identity import ensure_key

    ensure_key(resolve_scope(None, None, env=os.environ, cwd=project.parent))

    class Squatter(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b'{"status":"ok","proof":"' + b"0" * 64 + b'","pid":1,"version":"9","routes":1}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    full([])  # cache the port
    port = int(project.read_text().split("listen = ", 1)[1].split("\n", 1)[0])
    server = HTTPServer(("127.0.0.1", port), Squatter)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        for args in (["-q"], [], ["--json"]):
            assert fast(args) is None
        code, _ = full(["-q"])
        assert code == 1
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("data", [
    {"status": "ok", "proof": "ab" * 32, "pid": 123, "version": "0.1.0", "routes": 1,
     "config": '/a b/é "q"\\x.toml', "config_digest": "sha256:00", "port": 6790},
    {}, {"a": None, "b": True, "c": False, "d": 0, "e": -5},
])
def test_the_health_answer_is_read_as_json_reads_it(data: dict[str, object]) -> None:
    import json

    from cordon_proxy.statusfast import flat_object

    for separators in ((",", ":"), (", ", ": ")):
        assert flat_object(json.dumps(data, separators=separators).encode()) == data


@pytest.mark.parametrize("body", [b'{"a": 1.5}', b'{"a": [1]}', b'{"a": {"b": 1}}', b'{"a": 01}', b'{"a": 1,}',
                                  b"[1]", b'{"a": 1} x', b'{"a" 1}', b'{"a": "x}', b"{", b"\xff"])
def test_anything_else_in_the_answer_goes_to_the_full_command(body: bytes) -> None:
    from cordon_proxy.statusfast import flat_object

    assert flat_object(body) is None
