"""Test helpers (used by cordon-doctor's tests and the demo e2e test; not used at run time).

:func:`write_fake_proxy` writes a stand-in ``cordon_proxy`` package into a directory; put that directory first
on ``PYTHONPATH`` and ``python -m cordon_proxy start -c PATH`` (or ``--config PATH``) runs it instead of the real proxy. It
injects failures the demo must name: ``crash`` (exits at once), ``refuse`` (answers /health, then refuses
every CONNECT with 403), ``hang`` (never answers anything). It proves its identity on /health with the scope's
key, as the real proxy does (cordon_config.identity), so the failure it injects is the one the demo meets.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_FAKE_MAIN = '''\
import http.server, json, os, sys, time, tomllib
from pathlib import Path

from cordon_config.identity import ensure_key, health_answer
from cordon_config.scope import resolve_scope

mode = {mode!r}
args = sys.argv[1:]
config = args[args.index("--config" if "--config" in args else "-c") + 1]
if mode == "crash":
    sys.stderr.write("fake proxy: crashing on purpose\\n")
    sys.exit(3)
with open(config, "rb") as f:
    port = tomllib.load(f)["listen"]
key = ensure_key(resolve_scope(None, config, env=os.environ, cwd=Path.cwd()))


class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        query = self.path.partition("?")[2]
        answer = health_answer(key, query, {{"pid": os.getpid(), "version": "fake", "routes": 1, "port": port}})
        body = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self):
        if mode == "stall":
            time.sleep(60)
        body = b"cordon: refused by the fake proxy\\n"
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Cordon-Error", "blocked")
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
'''


def write_fake_proxy(directory: Path, mode: str) -> Path:
    """Write ``<directory>/cordon_proxy`` whose ``__main__`` fails in ``mode``; returns ``directory``."""
    if mode not in ("crash", "refuse", "stall"):
        raise ValueError(f"unknown fake proxy mode {mode!r}")
    package = directory / "cordon_proxy"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('"""A fake cordon_proxy for failure-injection tests."""\n')
    (package / "__main__.py").write_text(_FAKE_MAIN.format(mode=mode))
    return directory


def doctor(capsys: Any, *args: str) -> tuple[int, str]:
    """Run ``cordon doctor ARGS`` in-process: (exit code, what it printed), read through pytest's ``capsys``."""
    from cordon_doctor.cli import doctor_main

    code = doctor_main(list(args), prog="cordon doctor")
    return code, capsys.readouterr().out


def line_and_fix(out: str, check: str) -> tuple[str, str | None]:
    """The report line of check ``check`` and the ``fix:`` line under it (None when it has none)."""
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line.split(":", 1)[0].split()[-1:] == [check]:
            fix = lines[i + 1].strip() if i + 1 < len(lines) and lines[i + 1].strip().startswith("fix:") else None
            return line, fix
    raise AssertionError(f"no line for {check} in:\n{out}")
