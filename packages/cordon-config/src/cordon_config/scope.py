"""Scopes and the paths they imply, and finding the project's cordon.toml like git finds ``.git``.

This module is the one ``--scope``/``--config`` helper every cordon tool uses. It imports only the standard
library, so tools that need nothing else from cordon-config (cordon-ca's CLI) stay light.

Discovery (no ``--config``, no ``--scope user``): the project is the nearest directory, from the working
directory upwards, holding a ``cordon.toml``. The search stops (without looking there) at the home directory,
at another filesystem and at a directory other users may write (``/tmp``), and ends at a ``cordon.toml``
owned by another user (not used: anyone could have planted it). Nothing found: the working directory is the
project, as before any setup. The search itself is :func:`cordon_config.quickscope.find_project`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cordon_config.quickscope import CONFIG_NAME, find_project, home_of

Scope = Literal["project", "user"]
__all__ = ["CONFIG_NAME", "ScopeError", "ScopePaths", "add_scope_arguments", "config_home", "find_project",
           "missing_config", "resolve_scope", "scope_from_args", "using_line", "with_scope_flag"]


class ScopeError(ValueError):
    """The scope selection is contradictory or impossible (one clear line)."""


@dataclass(frozen=True, slots=True)
class ScopePaths:
    """Every path that belongs to one scope. All absolute."""

    scope: Scope
    config_path: Path
    state_dir: Path
    namespace: str
    #: the working directory discovery started from (None: chosen with ``--config`` or ``--scope user``)
    found_from: Path | None = field(default=None, compare=False)

    @property
    def found_above(self) -> bool:
        """The config was found in a parent of the working directory (worth saying which one)."""
        return self.found_from is not None and self.config_path.parent != self.found_from

    @property
    def flag(self) -> str:
        """What to add to a ``cordon`` command so it selects this scope again: ``""`` when discovery finds it
        from the same directory, `` --scope user``, or `` --config <path>`` (shell-quoted)."""
        if self.scope == "user":
            return " --scope user"
        if self.found_from is not None:
            return ""
        return f" --config {shlex.quote(str(self.config_path))}"

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
    discover: bool = True,
) -> ScopePaths:
    """Resolve ``--scope``/``--config`` into paths.

    Without either (or with ``--scope project``) the project is found upwards from ``cwd`` (module docstring);
    ``discover=False`` takes ``cwd`` as it is and reads nothing from disk.
    """
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
        here = Path(os.path.normpath(cwd))
        project = Path(find_project(str(here), home_of(env))) if discover else here
        namespace = project_namespace(project)
        return ScopePaths("project", project / CONFIG_NAME, base / "projects" / namespace, namespace, here)
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
        help="project (default: the nearest cordon.toml here or above) or user "
        "($XDG_CONFIG_HOME/cordon/cordon.toml)",
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


def missing_config(paths: ScopePaths) -> tuple[str, str]:
    """The one "no cordon.toml" message of every tool, and its hint: ``(message, hint)``."""
    if paths.scope == "user":
        return f"no user-scope cordon.toml at {paths.config_path}", "create it with: cordon setup --scope user"
    if paths.found_from is not None:
        return (f"no cordon.toml in {paths.found_from} or a parent directory",
                "run `cordon setup` in the project directory (or pass --config PATH, or --scope user)")
    return (f"no cordon.toml at {paths.config_path}",
            f"create it with: cd {shlex.quote(str(paths.config_path.parent))} && cordon setup")


def using_line(paths: ScopePaths) -> str | None:
    """``using /proj/cordon.toml`` when discovery found the config above the working directory, else None
    (commands that change something print it, so nobody edits a project they did not mean)."""
    if paths.found_above and paths.config_path.exists():
        return f"cordon: using {paths.config_path}"
    return None


_SCOPED = re.compile(r"\bcordon (?:ca generate|ca bundle|setup|start|doctor)\b(?: --force)?")


def with_scope_flag(text: str, paths: ScopePaths) -> str:
    """``text`` (a hint) with the scope's :attr:`~ScopePaths.flag` after each ``cordon ca generate``,
    ``cordon ca bundle``, ``cordon setup``, ``cordon start`` or ``cordon doctor`` it names, so the command
    works on the scope the user chose (hints from libraries that do not know the scope)."""
    flag = paths.flag
    if not flag or flag.strip() in text:
        return text
    return _SCOPED.sub(lambda match: match.group(0) + flag, text)
