"""The scopes cordon knows on this machine: the state dirs under ``$XDG_CONFIG_HOME/cordon/``.

Each state dir holds ``scope.json`` = ``{"config": "<absolute path of its cordon.toml>"}`` (0600), written by
:func:`record_scope` (setup and ``cordon start`` call it). Stdlib only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cordon_config.files import atomic_write
from cordon_config.scope import ScopePaths, config_home

__all__ = ["SCOPE_RECORD", "KnownScope", "known_scopes", "record_scope"]

SCOPE_RECORD = "scope.json"


@dataclass(frozen=True, slots=True)
class KnownScope:
    """One state dir: its namespace, where it is, and the cordon.toml it belongs to (None when unrecorded)."""

    namespace: str
    state_dir: Path
    config_path: Path | None


def record_scope(paths: ScopePaths) -> None:
    """Write ``<state_dir>/scope.json`` naming the scope's cordon.toml (0600; unchanged content not rewritten)."""
    paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = paths.state_dir / SCOPE_RECORD
    text = json.dumps({"config": str(paths.config_path)}) + "\n"
    try:
        if target.read_text(encoding="utf-8") == text:
            return
    except OSError:
        pass
    atomic_write(target, text, mode=0o600)


def _config_of(state_dir: Path) -> Path | None:
    try:
        data = json.loads((state_dir / SCOPE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = data.get("config") if isinstance(data, dict) else None
    return Path(config) if isinstance(config, str) and os.path.isabs(config) else None


def known_scopes(env: Mapping[str, str] | None = None) -> list[KnownScope]:
    """Every state dir under ``$XDG_CONFIG_HOME/cordon/`` (``projects/*`` and ``user``), sorted by namespace."""
    base = config_home(os.environ if env is None else env) / "cordon"
    found: list[KnownScope] = []
    projects = base / "projects"
    try:
        entries = sorted(projects.iterdir())
    except OSError:
        entries = []
    for state_dir in entries:
        if state_dir.is_dir() and not state_dir.is_symlink():
            found.append(KnownScope(state_dir.name, state_dir, _config_of(state_dir)))
    user = base / "user"
    if user.is_dir() and not user.is_symlink():
        found.append(KnownScope("user", user, _config_of(user)))
    return found
