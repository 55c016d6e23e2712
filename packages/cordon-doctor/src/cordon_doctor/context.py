"""What every doctor check reads: the scope's paths, the loaded config (when it loads) and the environment."""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.scope import ScopePaths

TYPE_CHECKING = False
if TYPE_CHECKING:
    from cordon_config.approvals import Unapproved
    from cordon_config.model import Config


@dataclass
class DoctorContext:
    """Inputs of the checks. ``config`` is None when cordon.toml is missing or invalid."""

    paths: ScopePaths
    environ: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    config: Config | None = None
    explicit_config: bool = False
    unapproved: list[Unapproved] = field(default_factory=list)  # from the "approvals" check

    @property
    def scope_flag(self) -> str:
        """`` --scope user`` / `` --config PATH`` / ``""``: appended to every fix command (ScopePaths.flag)."""
        return self.paths.flag

    @property
    def setup_fix(self) -> str:
        """The command that (re)creates this scope's base files."""
        if self.explicit_config:
            return f"cd {shlex.quote(str(self.paths.config_path.parent))} && cordon setup"
        return f"cordon setup{self.scope_flag}"

    @property
    def ca_cert_path(self) -> Path:
        """The CA certificate the config names (the scope's default before the config loads)."""
        tls = getattr(self.config, "tls", None)
        return Path(tls.ca_cert_path) if tls is not None and tls.ca_cert_path else self.paths.ca_cert

    @property
    def ca_key_path(self) -> Path:
        tls = getattr(self.config, "tls", None)
        return Path(tls.ca_key_path) if tls is not None and tls.ca_key_path else self.paths.ca_key
