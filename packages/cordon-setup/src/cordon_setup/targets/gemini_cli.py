"""Gemini CLI: ``.gemini/.env`` (project) or ``~/.gemini/.env`` (user) and a skill beside it.

Gemini CLI loads that file into its environment (in a trusted folder), so the proxy, the CA bundle for the
tools it runs and the dummy ``GEMINI_API_KEY`` come from it. It is a Node program, and Node trusts an extra CA
only from the environment it starts with, which that file is not: ``cordon run -- gemini`` is the way to start it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cordon_setup.context import SetupContext
from cordon_setup.records import Planned, Record, plan_dotenv, plan_text
from cordon_setup.targets.common import dummy_key, route_steps, scope_suffix, start_step
from cordon_setup.targets.skill import SKILL

NAME = "gemini-cli"
PROVIDER = "gemini"
MARKER = "# cordon: proxy, CA and dummy key (remove with: cordon integration disable gemini-cli)"


def agent_dir(ctx: SetupContext) -> Path:
    """Project scope: ``<project>/.gemini``; user scope: ``~/.gemini``."""
    return ctx.project_dir / ".gemini" if ctx.paths.scope == "project" else ctx.home / ".gemini"


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """``.env`` (env contract and the dummy key) and the skill."""
    dotenv = directory / ".env"
    skill = directory / "skills" / "cordon" / "SKILL.md"
    return [
        plan_dotenv(dotenv, {**ctx.env, **dummy_key(PROVIDER)}, marker=MARKER, old=old.get(str(dotenv))),
        plan_text(skill, SKILL, old=old.get(str(skill))),
    ]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup gemini-cli``."""
    steps = [*route_steps(ctx, PROVIDER), start_step(ctx)]
    steps.append(
        f"cordon run{scope_suffix(ctx)} --token {NAME} -- gemini    # Node trusts cordon's CA only from the "
        f"environment it starts with, not from {directory / '.env'}"
    )
    if ctx.paths.scope == "project":
        steps.append("trust this folder in Gemini CLI (it ignores .gemini/.env in an untrusted folder)")
    return steps
