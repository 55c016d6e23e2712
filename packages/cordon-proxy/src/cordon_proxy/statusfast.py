"""``cordon status`` in a few milliseconds: the entry point of ``status``, with the full command as fallback.

Claude Code's hook runs ``cordon status --quiet`` before every prompt, and people run it by hand; importing
argparse, dataclasses, the config parser and http.client costs several times Python's own start-up. So, as for
``cordon env`` (:mod:`cordon_setup.envfast`):

- the full command (:func:`cordon_proxy.cli.status_main`) saves ``<state dir>/status-cache`` (0600, only when
  the state dir exists and the config loaded) with the port and the identity of cordon.toml taken before it
  was read;
- this module parses the plain forms of the arguments by hand, resolves the scope with
  :mod:`cordon_config.quickscope` and, while cordon.toml keeps that identity, asks the port itself for the
  scope's identity proof (:mod:`cordon_config.proofs`, the MACs of :mod:`cordon_config.identity` without
  loading OpenSSL): refused is "not running", a proof made with the scope's key is "running". Anything else
  (no proof, another scope's, a proxy running an older config, ``--help``, an unusual argument, no or a
  stale cache, a file changed in the last :data:`RACY_SECONDS`) runs the full command, which names what holds
  the port, prints the same otherwise and refreshes the cache.

The text and JSON the two paths print come from the same functions here (:func:`running_text`, …).
"""

from __future__ import annotations

import os
import sys

from cordon_config.proofs import compare_digest, config_digest, health_target, server_proof
from cordon_config.quickscope import changed_at, file_identity, plain_options, quote, resolve

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "CACHE_NAME",
    "RACY_SECONDS",
    "cache_text",
    "fast_status",
    "main",
    "not_running_text",
    "parse_args",
    "running_text",
    "save_cache",
    "status_json",
]

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
    found = plain_options(args, _VALUED, _FLAGS)
    if found is None or ("quiet" in found and "json" in found):
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


def _key(state_dir: str) -> bytes | None:
    """The scope's identity key when it is a private regular file of this user (else the full command)."""
    try:
        fd = os.open(os.path.join(state_dir, "identity.key"), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        data = os.read(fd, 33)
    finally:
        os.close(fd)
    private = st.st_uid == os.geteuid() and not st.st_mode & 0o077 and (st.st_mode & 0o170000) == 0o100000
    return data if private and len(data) == 32 else None


def _health(port: int, key: bytes | None, *, parse: bool) -> dict[str, object] | None:
    """The proxy's verified ``/health`` answer (its details parsed only when ``parse``),
    ``{}`` when nothing listens (refused), None for anything else, or when the scope has no key to verify
    with (the full command then decides)."""
    import _socket  # not `socket`: it loads enum, selectors and more than this whole path costs

    nonce = os.urandom(32).hex()
    sock = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)
    sock.settimeout(HEALTH_TIMEOUT)
    try:
        try:
            sock.connect(("127.0.0.1", port))
        except ConnectionRefusedError:
            return {}
        if key is None:
            return None
        request = f"GET {health_target(key, nonce)} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
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
    prefix = b'{"status":"ok","proof":"'
    if not sep or not head.startswith(b"HTTP/1.1 200 ") or not body.startswith(prefix):
        return None
    proof = body[len(prefix):len(prefix) + 64].decode("ascii", "replace")
    if not compare_digest(proof, server_proof(key, nonce)):
        return None  # not this scope's cordon: the full command names what it is
    if not parse:
        return {"status": "ok"}
    answer = flat_object(body)
    if answer is None or answer.get("port", port) != port:
        return None
    return answer


def flat_object(body: bytes) -> dict[str, object] | None:
    """A JSON object of strings, integers, booleans and nulls (what ``/health`` answers), read without the
    ``json`` package (which loads ``re``): strings through the C scanner ``json`` itself uses. None for
    anything else (the full command then parses it)."""
    from _json import scanstring

    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None
    words = {"true": True, "false": False, "null": None}
    found: dict[str, object] = {}
    i, n = 1, len(text)
    if not text.startswith("{"):
        return None
    try:
        while i < n:
            while i < n and text[i] in " \t\r\n":
                i += 1
            if text[i] == "}" and not found and text[i + 1:].strip() == "":
                return found
            if text[i] != '"':
                return None
            key, i = scanstring(text, i + 1, True)
            while text[i] in " \t":
                i += 1
            if text[i] != ":":
                return None
            i += 1
            while text[i] in " \t":
                i += 1
            value: object
            if text[i] == '"':
                value, i = scanstring(text, i + 1, True)
            else:
                end = i
                while end < n and text[end] not in ",} \t\r\n":
                    end += 1
                word = text[i:end]
                if word in words:
                    value = words[word]
                elif (word.lstrip("-").isdigit() and word.isascii() and not word.startswith(("0", "-0"))) or word == "0":
                    value = int(word)
                else:
                    return None
                i = end
            found[key] = value
            while i < n and text[i] in " \t\r\n":
                i += 1
            if text[i] == ",":
                i += 1
                continue
            if text[i] == "}" and text[i + 1:].strip() == "":
                return found
            return None
    except (IndexError, ValueError):
        return None
    return None


def running_text(port: int, config_path: str, health: Mapping[str, object], current: bool, flag: str) -> str:
    """What ``cordon status`` prints for this scope's running cordon."""
    routes = health.get("routes")
    text = (f"cordon is running on 127.0.0.1:{port} (pid {health.get('pid')}, version {health.get('version')}, "
            f"{routes} route{'' if routes == 1 else 's'})\nconfig: {config_path} ({health.get('config_digest')})\n")
    if not current:
        text += f"the running proxy uses an older version of this config\nhint: cordon reload{flag}\n"
    return text


def not_running_text(port: int, config_path: str, flag: str) -> str:
    """What ``cordon status`` prints when nothing listens on the scope's port."""
    return f"cordon is not running on 127.0.0.1:{port}\nconfig: {config_path}\nhint: cordon start{flag}\n"


def status_json(port: int, config_path: str, kind: str, health: Mapping[str, object], current: bool | None,
                held_by: str | None) -> str:
    """``cordon status --json``: one object."""
    import json

    ours = kind == "ours"
    data = {
        "running": ours,
        "state": kind,
        "port": port,
        "config": config_path,
        "pid": health.get("pid") if ours else None,
        "routes": health.get("routes") if ours else None,
        "version": health.get("version") if ours else None,
        "config_digest": health.get("config_digest") if ours else None,
        "config_current": current,
        "held_by": held_by,
    }
    return json.dumps(data) + "\n"


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
    answer = _health(port, _key(state_dir), parse="quiet" not in options)
    if answer is None:
        return None
    if "quiet" in options:
        return (0, "") if answer else (1, "")
    # what to add to a command so it selects this scope again (ScopePaths.flag, spelt without its imports)
    flag = " --scope user" if options.get("scope") == "user" else (
        f" --config {quote(config_path)}" if "config" in options else "")
    if not answer:
        if "json" in options:
            return 1, status_json(port, config_path, "none", {}, None, None)
        return 1, not_running_text(port, config_path, flag)
    try:
        with open(config_path, "rb") as handle:
            current = answer.get("config_digest") == config_digest(handle.read())
    except OSError:
        return None
    if "json" in options:
        return 0, status_json(port, config_path, "ours", answer, current, None)
    return 0, running_text(port, config_path, answer, current, flag)
