"""Hermes Agent: its default profile ``~/.hermes`` is a cordon scope of its own (``~/.hermes/cordon.toml``).

Hermes loads ``~/.hermes/.env`` into its environment at start-up (overriding the shell), so the env contract
and the provider's dummy key go there; the skill goes where Hermes looks for skills.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from cordon_setup.context import SetupContext
from cordon_setup.errors import IntegrationError
from cordon_setup.records import Planned, Record, plan_dotenv, plan_text
from cordon_setup.targets.common import dummy_key, route_steps, scope_suffix, start_step
from cordon_setup.targets.skill import SKILL

NAME = "hermes"
PROVIDER = "anthropic"
MARKER = "# cordon: proxy, CA and dummy key (remove with: cordon integration disable hermes)"


def home_dir(home: Path) -> Path:
    """``~/.hermes``: the default profile."""
    return home / ".hermes"


def own_config(home: Path) -> Path:
    """The cordon.toml of this integration's own scope."""
    return home_dir(home) / "cordon.toml"


def preflight(environ: Mapping[str, str], home: Path) -> None:
    """Refuse a ``HERMES_HOME`` that points away from ``~/.hermes`` (another profile would not see the files)."""
    value = environ.get("HERMES_HOME", "").strip()
    if value and os.path.normpath(os.path.expanduser(value)) != str(home_dir(home)):
        raise IntegrationError(
            f"HERMES_HOME points at {value}, but cordon setup hermes wires the default profile {home_dir(home)}",
            hint=f"unset HERMES_HOME (or point it at {home_dir(home)}) and run it again",
        )


def agent_dir(ctx: SetupContext) -> Path:
    return home_dir(ctx.home)


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """``.env`` (env contract and the dummy key) and the skill."""
    dotenv = directory / ".env"
    skill = directory / "skills" / "devops" / "cordon" / "SKILL.md"
    return [
        plan_dotenv(dotenv, {**ctx.env, **dummy_key(PROVIDER)}, marker=MARKER, old=old.get(str(dotenv))),
        plan_text(skill, SKILL, old=old.get(str(skill))),
    ]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup hermes``."""
    return [
        *route_steps(ctx, PROVIDER),
        start_step(ctx),
        f"hermes    # Hermes loads {directory / '.env'} at start: the proxy, the CA bundle and the dummy key",
        f"(another provider: set its key variable to the dummy in {directory / '.env'} and add its route; "
        f"check with: cordon doctor{scope_suffix(ctx)})",
    ]
