"""Scopes and the paths they imply (spec §1), as pure functions of an environment mapping.

This module is the one ``--scope``/``--config`` helper every cordon tool uses. It imports only the standard
library, so tools that need nothing else from cordon-config (cordon-ca's CLI) stay light.
"""

from __future__ import annotations

import argparse
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Scope = Literal["project", "user"]
CONFIG_NAME = "cordon.toml"


class ScopeError(ValueError):
    """The scope selection is contradictory or impossible (one clear line)."""


@dataclass(frozen=True, slots=True)
class ScopePaths:
    """Every path that belongs to one scope. All absolute."""

    scope: Scope
    config_path: Path
    state_dir: Path
    namespace: str

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "certs"

    @property
    def ca_cert(self) -> Path:
        return self.certs_dir / "ca-cert.pem"

    @property
    def ca_key(self) -> Path:
        return self.certs_dir / "ca-key.pem"

    @property
    def combined_bundle(self) -> Path:
        return self.certs_dir / "combined-ca.pem"

    @property
    def tokens_path(self) -> Path:
        return self.state_dir / "tokens.toml"


def config_home(env: Mapping[str, str]) -> Path:
    """``$XDG_CONFIG_HOME``, else ``~/.config`` (Linux and macOS alike); relative values are ignored."""
    xdg = env.get("XDG_CONFIG_HOME", "")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    home = env.get("HOME") or os.path.expanduser("~")
    return Path(home) / ".config"


def project_namespace(project_dir: Path) -> str:
    """``<dirname>-<hash8>``: the basename and the first 8 hex digits of sha256 of the absolute path."""
    absolute = str(project_dir)
    digest = hashlib.sha256(absolute.encode("utf-8")).hexdigest()[:8]
    name = project_dir.name or "root"
    return f"{name}-{digest}"


def resolve_scope(
    scope: Scope | str | None,
    config: str | os.PathLike[str] | None,
    *,
    env: Mapping[str, str],
    cwd: Path,
) -> ScopePaths:
    """Resolve ``--scope``/``--config`` into paths (spec §1). Pure: reads nothing from disk."""
    if scope is not None and config is not None:
        raise ScopeError("--scope and --config are mutually exclusive; give one of them")
    base = config_home(env) / "cordon"
    if config is not None:
        path = Path(config)
        if not path.is_absolute():
            path = cwd / path
        path = Path(os.path.normpath(path))
        namespace = project_namespace(path.parent)
        return ScopePaths("project", path, base / "projects" / namespace, namespace)
    if scope in (None, "project"):
        project = Path(os.path.normpath(cwd))
        namespace = project_namespace(project)
        return ScopePaths("project", project / CONFIG_NAME, base / "projects" / namespace, namespace)
    if scope == "user":
        return ScopePaths("user", base / CONFIG_NAME, base / "user", "user")
    raise ScopeError(f"unknown scope {scope!r}; use 'project' or 'user'")


def add_scope_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the shared ``--scope project|user`` and ``--config/-c PATH`` options (mutually exclusive)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--scope",
        choices=("project", "user"),
        default=None,
        help="project (default: ./cordon.toml) or user ($XDG_CONFIG_HOME/cordon/cordon.toml)",
    )
    group.add_argument("-c", "--config", metavar="PATH", default=None, help="use this cordon.toml")


def scope_from_args(
    args: argparse.Namespace, env: Mapping[str, str] | None = None, cwd: Path | None = None
) -> ScopePaths:
    """ScopePaths for parsed arguments that went through :func:`add_scope_arguments`."""
    return resolve_scope(
        getattr(args, "scope", None),
        getattr(args, "config", None),
        env=os.environ if env is None else env,
        cwd=Path.cwd() if cwd is None else cwd,
    )
