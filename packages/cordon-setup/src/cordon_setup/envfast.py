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
  :func:`cordon_config.quickscope.resolve` (``os`` only, config discovery included; the same result as
  :func:`cordon_config.scope.resolve_scope`, which tests check on generated inputs and real directory trees) and prints from the cache when the identities still match. On anything else (``--help``,
  ``--json``, an unusual argument, a missing or stale cache, an error) it hands the same arguments to the full
  command, which is the one that validates, reports errors and refreshes the cache.

It imports ``os`` and ``sys`` (already loaded by every Python start), :mod:`cordon_config.quickscope` and
:mod:`cordon_setup.render`.
"""

from __future__ import annotations

import os
import sys

from cordon_config.quickscope import changed_at, file_identity, plain_options, resolve

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
    found = plain_options(args, _OPTIONS)
    if found is None or found.get("format", "shell") not in _FAST_FORMATS:
        return None
    return found


identity = file_identity  # the name the full command and the tests use


def settled(identity_text: str, now: float) -> bool:
    """The file of this :func:`identity` last changed at least :data:`RACY_SECONDS` before ``now``."""
    changed = changed_at(identity_text)
    return changed is None or now - changed >= RACY_SECONDS


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
