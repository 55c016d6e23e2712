"""Everything an integration needs to plan its files, gathered once (and kept in its manifest for rewrites)."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.scope import CONFIG_NAME, ScopePaths


@dataclass(frozen=True, slots=True)
class SetupContext:
    """The scope, the port, the env contract (with the integration's token) and where things live."""

    paths: ScopePaths
    port: int
    env: Mapping[str, str]
    cwd: Path
    home: Path
    environ: Mapping[str, str]
    cordon_cmd: str
    routes: Mapping[str, str] = field(default_factory=dict)  # host -> route name, from cordon.toml

    @property
    def project_dir(self) -> Path:
        """The directory holding the project's cordon.toml (agent files of project scope go here)."""
        return self.paths.config_path.parent

    @property
    def default_config(self) -> bool:
        """True when plain ``cordon <cmd>`` (no flag) finds this scope's config from ``cwd``."""
        return self.paths.scope == "project" and self.paths.config_path == self.cwd / CONFIG_NAME

    @property
    def scope_flag(self) -> str:
        """``--scope user`` or ``--config <abs cordon.toml>`` (shell-quoted): works from any directory."""
        if self.paths.scope == "user":
            return "--scope user"
        return f"--config {shlex.quote(str(self.paths.config_path))}"


def cordon_argv(environ: Mapping[str, str] | None = None) -> list[str]:
    """How a hook or a service should call cordon, with absolute paths.

    The ``cordon`` script beside this interpreter, else the one on PATH, else ``python -m cordon``.
    """
    beside = Path(sys.executable).parent / "cordon"
    if beside.is_file() and os.access(beside, os.X_OK):
        return [str(beside)]
    env = os.environ if environ is None else environ
    found = shutil.which("cordon", path=env.get("PATH"))
    if found:
        return [str(Path(found).absolute())]
    return [sys.executable, "-m", "cordon"]


def cordon_command(environ: Mapping[str, str] | None = None) -> str:
    """:func:`cordon_argv` as one shell-quoted string (for hooks)."""
    return shlex.join(cordon_argv(environ))


def home_dir(environ: Mapping[str, str]) -> Path:
    """``$HOME`` (absolute), else the password database's idea of it."""
    home = environ.get("HOME", "")
    return Path(home) if home and os.path.isabs(home) else Path(os.path.expanduser("~"))
