"""``cordon env`` in a few milliseconds: the last answer, reused while nothing it came from has changed.

``eval "$(cordon env)"`` runs at every shell start. What it prints depends on the scope's paths (arguments,
environment, working directory), on cordon.toml (``listen``, ``[tls]``) and on tokens.toml (the token). Reading
TOML alone (``tomllib`` and the regular expressions it compiles) costs more than Python's whole start-up on a
small machine, and argparse, pathlib and dataclasses as much again. So:

- the full command (:func:`cordon_setup.cli.env_main`) saves what it computed in ``<state dir>/env-cache``
  (0600, written atomically; only when the state directory exists) with the identity (device, inode, size,
  mtime, ctime, mode, owner) of cordon.toml and tokens.toml, taken *before* it read them. A chmod, a
  replacement, an edit (even one that restores the mtime: the ctime moves) changes the identity. A file
  changed less than :data:`RACY_SECONDS` ago is not cached at all: a second edit within the same timestamp
  tick would keep its identity (git's "racily clean" problem);
- this module, the ``env`` entry point, parses the common arguments by hand, resolves the scope with
  ``os`` only, config discovery included (the same result as :func:`cordon_config.scope.resolve_scope`; tests
  compare the two on generated inputs and on real directory trees) and prints from the cache when the identities still match. On anything else (``--help``,
  ``--json``, an unusual argument, a missing or stale cache, an error) it hands the same arguments to the full
  command, which is the one that validates, reports errors and refreshes the cache.

It imports ``os`` and ``sys`` (already loaded by every Python start) and :mod:`cordon_setup.render`.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # `typing` costs more than this whole module
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = ["CACHE_NAME", "RACY_SECONDS", "cache_text", "cached_env", "identity", "main", "parse_args", "resolve",
           "settled"]

CACHE_NAME = "env-cache"
RACY_SECONDS = 2.0  # a file changed more recently than this is not cached (see the module doc)
_MAGIC = "cordon-env-cache 1"
_FAST_FORMATS = ("shell", "fish", "dotenv")  # json goes through the full command (json's import costs)
_OPTIONS = {"--scope": "scope", "-c": "config", "--config": "config", "-f": "format", "--format": "format",
            "--token": "token"}


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Entry point of ``cordon env``: print from the cache, else run the full command."""
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        text = cached_env(args, os.environ, os.getcwd())
    except (OSError, ValueError, UnicodeError):
        text = None
    if text is not None:
        sys.stdout.write(text)
        return 0
    from cordon_setup.cli import env_main

    return env_main(args, prog=prog)


def parse_args(args: Sequence[str]) -> dict[str, str] | None:
    """The options of the plain forms (``--opt VALUE``, ``--opt=VALUE``), each at most once; None otherwise."""
    found: dict[str, str] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        name, eq, value = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        key = _OPTIONS.get(name)
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
    if "scope" in found and ("config" in found or found["scope"] not in ("project", "user")):
        return None
    if found.get("format", "shell") not in _FAST_FORMATS:
        return None
    return found


def resolve(scope: str | None, config: str | None, environ: Mapping[str, str], cwd: str) -> tuple[str, str]:
    """(config path, state dir) as ``str`` of :func:`cordon_config.scope.resolve_scope`'s paths (POSIX)."""
    xdg = environ.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        home = xdg
    else:
        home = os.path.join(environ.get("HOME") or os.path.expanduser("~"), ".config")
    base = os.path.join(home, "cordon")
    if config is not None:
        path = _pure(os.path.normpath(os.path.join(cwd, config)))
        project = _parent(path)
    elif scope == "user":
        return _pure(os.path.join(base, "cordon.toml")), _pure(os.path.join(base, "user"))
    else:
        project = _pure(_find_project(os.path.normpath(cwd), environ.get("HOME") or os.path.expanduser("~")))
        path = _pure(os.path.join(project, "cordon.toml"))
    name = project.rstrip("/").rpartition("/")[2] or "root"
    namespace = f"{name}-{_sha256(project.encode('utf-8')).hexdigest()[:8]}"
    return path, _pure(os.path.join(base, "projects", namespace))


def _find_project(start: str, home: str) -> str:
    """:func:`cordon_config.scope.find_project`, copied: importing cordon_config costs ``typing``. A test
    compares the two on real directory trees."""
    if os.path.isfile(os.path.join(start, "cordon.toml")):
        return start
    try:
        device = os.stat(start).st_dev
    except OSError:
        return start
    ceiling = os.path.normpath(home) if home else ""
    uid = os.geteuid()
    here = start
    while True:
        parent = os.path.dirname(here)
        if parent in (here, ceiling):
            return start
        try:
            info = os.stat(parent)
        except OSError:
            return start
        if info.st_dev != device or info.st_mode & 0o002:
            return start
        try:
            found = os.stat(os.path.join(parent, "cordon.toml"))
        except OSError:
            here = parent
            continue
        if found.st_mode & 0o170000 == 0o100000 and found.st_uid == uid:
            return parent
        return start


def identity(path: str) -> str:
    """``device inode size mtime ctime mode uid`` of ``path``, or ``absent``: any replacement, edit or chmod
    changes it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "absent"
    return f"{st.st_dev} {st.st_ino} {st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_mode:o} {st.st_uid}"


def settled(identity_text: str, now: float) -> bool:
    """The file of this :func:`identity` last changed at least :data:`RACY_SECONDS` before ``now``."""
    if identity_text == "absent":
        return True
    fields = identity_text.split()
    changed = max(int(fields[3]), int(fields[4])) / 1e9
    return now - changed >= RACY_SECONDS


def cache_text(config_path: str, token: str, config_id: str, tokens_id: str, env: Mapping[str, str]) -> str | None:
    """The cache file's text, or None when a value cannot be stored on one line."""
    lines = [_MAGIC, f"config {config_path}", f"token {token}", f"config-id {config_id}", f"tokens-id {tokens_id}"]
    for name, value in env.items():
        lines.append(f"env {name}={value}")
    if any("\n" in line or "\r" in line for line in lines):
        return None
    return "\n".join(lines) + "\n"


def cached_env(args: Sequence[str], environ: Mapping[str, str], cwd: str) -> str | None:
    """What ``cordon env ARGS`` prints, from a cache that is still current; None when it must be computed."""
    if os.name != "posix":
        return None
    options = parse_args(args)
    if options is None:
        return None
    config_path, state_dir = resolve(options.get("scope"), options.get("config"), environ, cwd)
    try:
        with open(os.path.join(state_dir, CACHE_NAME), encoding="utf-8") as handle:
            st = os.fstat(handle.fileno())
            if st.st_uid != os.geteuid() or st.st_mode & 0o077:
                return None  # only a cache this user wrote, as cordon writes it (0600)
            lines = handle.read().split("\n")
    except (FileNotFoundError, NotADirectoryError):
        return None
    token = options.get("token", "default")
    expected = [_MAGIC, f"config {config_path}", f"token {token}", f"config-id {identity(config_path)}",
                f"tokens-id {identity(os.path.join(state_dir, 'tokens.toml'))}"]
    if lines[:5] != expected or lines[-1] != "":
        return None
    env: dict[str, str] = {}
    for line in lines[5:-1]:
        if not line.startswith("env "):
            return None
        name, _, value = line[4:].partition("=")
        env[name] = value
    from cordon_setup.render import render_env

    return render_env(env, options.get("format", "shell"))


def _pure(path: str) -> str:
    """``str(PurePosixPath(path))``: no empty or ``.`` parts; exactly two leading slashes stay two."""
    root = ""
    if path.startswith("/"):
        root = "//" if path.startswith("//") and not path.startswith("///") else "/"
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def _parent(path: str) -> str:
    """``str(PurePosixPath(path).parent)`` of a :func:`_pure` path."""
    head, sep, _ = path.rpartition("/")
    if not sep:
        return "."
    if head.strip("/") == "":
        return path[: len(head) + 1] if head else "/"
    return head


def _load_sha256():  # type: ignore[no-untyped-def]
    # the built-in module, not hashlib: hashlib loads OpenSSL (~3 ms)
    try:
        from _sha256 import sha256  # Python 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # Python 3.12+
        except ImportError:
            from hashlib import sha256
    return sha256


_sha256 = _load_sha256()
