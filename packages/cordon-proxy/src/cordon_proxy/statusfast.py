"""``cordon status`` in a few milliseconds: the entry point of ``status``, with the full command as fallback.

Claude Code's hook runs ``cordon status --quiet`` before every prompt, and people run it by hand; importing
argparse, dataclasses, the config parser and http.client costs several times Python's own start-up. So, as for
``cordon env`` (:mod:`cordon_setup.envfast`):

- the full command (:func:`cordon_proxy.cli.status_main`) saves ``<state dir>/status-cache`` (0600, only when
  the state dir exists and the config loaded) with the port and the identity of cordon.toml taken before it
  was read;
- this module parses the plain forms of the arguments by hand, resolves the scope with
  :mod:`cordon_config.quickscope` and, while cordon.toml keeps that identity, asks the port itself: refused
  is "not running", a healthy answer is "running". Anything else (another answer, ``--help``, an unusual
  argument, no or a stale cache, a file changed in the last :data:`RACY_SECONDS`) runs the full command,
  which prints the same and refreshes the cache.
"""

from __future__ import annotations

import os
import sys

from cordon_config.quickscope import changed_at, file_identity, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["CACHE_NAME", "RACY_SECONDS", "cache_text", "fast_status", "main", "parse_args", "save_cache"]

CACHE_NAME = "status-cache"
RACY_SECONDS = 2.0
_MAGIC = "cordon-status-cache 1"
_VALUED = {"--scope": "scope", "-c": "config", "--config": "config"}
_FLAGS = {"-q": "quiet", "--quiet": "quiet", "--json": "json"}
HEALTH_TIMEOUT = 2.0


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Entry point of ``cordon status``: answer from the fast path, else run the full command."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        answer = fast_status(args, os.environ, os.getcwd())
    except (OSError, ValueError, UnicodeError):
        answer = None
    if answer is not None:
        code, text = answer
        sys.stdout.write(text)
        return code
    from cordon_proxy.cli import status_main

    return status_main(args, prog=prog)


def parse_args(args: Sequence[str]) -> dict[str, str] | None:
    """The options of the plain forms, each at most once; None for anything the full parser must see."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in _FLAGS:
            if _FLAGS[arg] in found:
                return None
            found[_FLAGS[arg]] = "1"
            i += 1
            continue
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = _VALUED.get(name)
        if key is None or key in found:
            return None
        if not eq:
            if i + 1 >= len(args):
                return None
            value = args[i + 1]
            i += 1
        if not value or value.startswith("-"):
            return None
        found[key] = value
        i += 1
    if "quiet" in found and "json" in found:
        return None
    if "scope" in found and ("config" in found or found["scope"] not in ("project", "user")):
        return None
    return found


def cache_text(config_path: str, config_id: str, port: int) -> str:
    return f"{_MAGIC}\nconfig {config_path}\nconfig-id {config_id}\nport {port}\n"


def save_cache(config_path: str, state_dir: str, config_id: str, port: int, now: float) -> None:
    """Best effort, for the full command: remember the port of a config that loaded (see the module doc)."""
    changed = changed_at(config_id)
    if changed is None or now - changed < RACY_SECONDS or not os.path.isdir(state_dir):
        return
    target = os.path.join(state_dir, CACHE_NAME)
    text = cache_text(config_path, config_id, port)
    try:
        with open(target, encoding="utf-8") as handle:
            if handle.read() == text:
                return
    except (OSError, UnicodeError):
        pass
    from pathlib import Path

    from cordon_config.files import atomic_write

    try:
        atomic_write(Path(target), text, mode=0o600)
    except OSError:
        pass


def _cached_port(config_path: str, state_dir: str) -> int | None:
    try:
        with open(os.path.join(state_dir, CACHE_NAME), encoding="utf-8") as handle:
            st = os.fstat(handle.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                return None
            lines = handle.read().split("\n")
    except (FileNotFoundError, NotADirectoryError):
        return None
    if len(lines) != 5 or lines[:3] != [_MAGIC, f"config {config_path}", f"config-id {file_identity(config_path)}"]:
        return None
    port = lines[3].removeprefix("port ")
    return int(port) if port.isdigit() and 0 < int(port) < 65536 and lines[4] == "" else None


def _health(port: int, *, parse: bool) -> dict[str, object] | None:
    """The proxy's ``/health`` answer (parsed only when ``parse``: json loads ``re``), ``{}`` when nothing
    listens (refused), None for anything else (the full command then decides)."""
    import _socket  # not `socket`: it loads enum, selectors and more than this whole path costs

    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.settimeout(HEALTH_TIMEOUT)
    try:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return {}
        sock.sendall(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while len(data) < 65536:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        sock.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep or not head.startswith((b"HTTP/1.1 200 ", b"HTTP/1.0 200 ")):
        return None
    if not parse:  # the shape of the proxy's own answer, else let the full command look
        return {"status": "ok"} if body.startswith(b'{"status": "ok", "version": "') else None
    import json

    try:
        answer = json.loads(body)
    except ValueError:
        return None
    return answer if isinstance(answer, dict) and answer.get("status") == "ok" else None


def fast_status(args: Sequence[str], environ: Mapping[str, str], cwd: str) -> tuple[int, str] | None:
    """``(exit code, stdout)`` of ``cordon status ARGS`` when the fast path can answer, else None."""
    if os.name != "posix":
        return None
    options = parse_args(args)
    if options is None:
        return None
    config_path, state_dir = resolve(options.get("scope"), options.get("config"), environ, cwd)
    port = _cached_port(config_path, state_dir)
    if port is None:
        return None
    answer = _health(port, parse="quiet" not in options)
    if answer is None:
        return None
    running = bool(answer)
    code = 0 if running else 1
    if "quiet" in options:
        return code, ""
    if "json" in options:
        import json

        data = {"running": running, "port": port, "config": config_path,
                "routes": answer.get("routes") if running else None,
                "version": answer.get("version") if running else None}
        return code, json.dumps(data) + "\n"
    if running:
        routes = answer.get("routes")
        return code, (f"cordon is running on 127.0.0.1:{port} (version {answer.get('version')}, "
                      f"{routes} route{'' if routes == 1 else 's'})\nconfig: {config_path}\n")
    return code, f"cordon is not running on 127.0.0.1:{port}\nconfig: {config_path}\nhint: cordon start\n"
