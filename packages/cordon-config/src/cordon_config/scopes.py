"""The scopes this user has: one state directory each under ``$XDG_CONFIG_HOME/cordon/``.

Every state directory records the cordon.toml it belongs to in ``scope.json`` (``{"config": "<absolute
path>"}``, 0600), written by ``cordon setup`` and ``cordon start`` through :func:`record_scope`. That is how
cordon knows its scopes without a registry: to give a new scope a port no other scope uses
(:func:`ports_in_use`), to name the scope whose proxy holds a port, and to list or prune state directories whose
project is gone (``cordon scopes``). Stdlib only.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import atomic_write
from cordon_config.scope import CONFIG_NAME, ScopePaths, config_home

RECORD = "scope.json"


@dataclass(frozen=True, slots=True)
class KnownScope:
    """A state directory and the cordon.toml it records (None when it has no readable ``scope.json``)."""

    namespace: str
    state_dir: Path
    config_path: Path | None

    @property
    def kind(self) -> str:
        """``user`` or ``project``."""
        return "user" if self.namespace == "user" else "project"

    @property
    def gone(self) -> bool:
        """A project scope whose recorded cordon.toml no longer exists (its project was moved or deleted). The
        user scope is never gone: its config lives in a fixed place."""
        return self.kind == "project" and self.config_path is not None and not self.config_path.exists()


def _read(state_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((state_dir / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(paths: ScopePaths, data: dict[str, object]) -> Path:
    paths.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = paths.state_dir / RECORD
    text = json.dumps(data) + "\n"
    try:
        if target.read_text(encoding="utf-8") == text and not target.is_symlink():
            return target
    except (OSError, UnicodeDecodeError):
        pass
    atomic_write(target, text, mode=0o600)
    return target


def record_scope(paths: ScopePaths) -> Path:
    """Write ``<state dir>/scope.json`` naming the scope's cordon.toml (0600; unchanged files are not
    rewritten; other keys kept). Creates the state directory (0700) when missing."""
    return _write(paths, {**_read(paths.state_dir), "config": str(paths.config_path)})


def read_record(state_dir: Path) -> Path | None:
    """The cordon.toml recorded in ``state_dir``, or None (no record, unreadable, or not an absolute path)."""
    config = _read(state_dir).get("config")
    if not isinstance(config, str) or not os.path.isabs(config):
        return None
    return Path(config)


LOG_NAME = "proxy.log"


def default_log(paths: ScopePaths) -> Path:
    """``<state dir>/proxy.log``: where the service and ``cordon run``'s proxy log."""
    return paths.state_dir / LOG_NAME


def record_log(paths: ScopePaths, log: Path) -> None:
    """Remember where this scope's proxy logs (``cordon start --log-file``), for ``cordon logs``."""
    _write(paths, {**_read(paths.state_dir), "config": str(paths.config_path), "log": str(log)})


def scope_log(paths: ScopePaths) -> Path:
    """The scope's log file: the last one a proxy of this scope was started with, else :func:`default_log`."""
    log = _read(paths.state_dir).get("log")
    return Path(log) if isinstance(log, str) and os.path.isabs(log) else default_log(paths)


def cordon_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME/cordon``: where every state directory lives."""
    return config_home(env) / "cordon"


def known_scopes(env: Mapping[str, str] | None = None) -> list[KnownScope]:
    """Every state directory (``projects/*`` sorted by name, then ``user``) with its recorded config.

    The user scope's config is known without a record (it is always ``$XDG_CONFIG_HOME/cordon/cordon.toml``).
    """
    base = cordon_home(os.environ if env is None else env)
    found: list[KnownScope] = []
    projects = base / "projects"
    try:
        entries = sorted(projects.iterdir())
    except OSError:
        entries = []
    for state_dir in entries:
        if state_dir.is_dir() and not state_dir.is_symlink():
            found.append(KnownScope(state_dir.name, state_dir, read_record(state_dir)))
    user = base / "user"
    if user.is_dir() and not user.is_symlink():
        found.append(KnownScope("user", user, read_record(user) or base / CONFIG_NAME))
    return found


def listen_port(config_path: Path) -> int | None:
    """``listen`` of a cordon.toml (the lenient reader), or None when it is absent or unreadable."""
    from cordon_config.facts import FactsError, listen_of, read_document

    try:
        doc = read_document(config_path)
        return None if doc is None else listen_of(doc, config_path)
    except FactsError:
        return None


def ports_in_use(env: Mapping[str, str] | None = None, *, exclude: Path | None = None) -> dict[int, Path]:
    """The ``listen`` port of every known scope's cordon.toml (except ``exclude``) → that cordon.toml."""
    taken: dict[int, Path] = {}
    for scope in known_scopes(env):
        config = scope.config_path
        if config is None or (exclude is not None and config == exclude):
            continue
        port = listen_port(config)
        if port is not None:
            taken.setdefault(port, config)
    return taken


def scope_port(start: int, env: Mapping[str, str] | None = None, *, exclude: Path | None = None,
               avoid: tuple[int, ...] = ()) -> int:
    """The first port from ``start`` that no other known scope uses (nor ``avoid``) and that can be bound now."""
    from cordon_config.ports import free_port

    taken = set(ports_in_use(env, exclude=exclude)) | set(avoid)
    port = start
    while True:
        port = free_port(port)
        if port not in taken:
            return port
        port += 1


def remove_state_dir(scope: KnownScope, env: Mapping[str, str] | None = None) -> None:
    """Delete a state directory (its CA, tokens, approvals, logs): only one under ``$XDG_CONFIG_HOME/cordon``."""
    base = cordon_home(os.environ if env is None else env).resolve()
    target = scope.state_dir
    if target.is_symlink() or target.resolve().parent not in (base / "projects", base):
        raise ValueError(f"{target} is not a cordon state directory")
    shutil.rmtree(target)
