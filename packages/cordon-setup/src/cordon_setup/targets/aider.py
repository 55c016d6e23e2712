"""Aider: its ``.env`` file (project scope: ``<project>/.env``; user scope: ``~/.env``).

Aider loads ``.env`` from the home directory, the git root and the current directory into its environment at
start-up (overriding the shell) before any request, so the whole env contract and the dummy
``OPENAI_API_KEY`` work from there; Aider and litellm are Python, which reads the CA bundle from
``SSL_CERT_FILE``/``REQUESTS_CA_BUNDLE`` when a client is created.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cordon_setup.context import SetupContext
from cordon_setup.records import Planned, Record, plan_dotenv
from cordon_setup.targets.common import dummy_key, route_steps, start_step

NAME = "aider"
PROVIDER = "openai"
MARKER = "# cordon: proxy, CA and dummy key for aider (remove with: cordon integration disable aider)"


def agent_dir(ctx: SetupContext) -> Path:
    """Project scope: the project directory; user scope: the home directory."""
    return ctx.project_dir if ctx.paths.scope == "project" else ctx.home


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """``.env``: the env contract and the dummy key."""
    dotenv = directory / ".env"
    return [plan_dotenv(dotenv, {**ctx.env, **dummy_key(PROVIDER)}, marker=MARKER, old=old.get(str(dotenv)))]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup aider``."""
    steps = [*route_steps(ctx, PROVIDER), start_step(ctx)]
    steps.append(f"aider    # Aider loads {directory / '.env'} at start: the proxy, the CA bundle and the dummy key")
    if ctx.paths.scope == "project" and (ctx.project_dir / ".git").exists():
        steps.append("keep .env out of git: it holds this project's proxy token "
                     "(e.g. printf '.env\\n' >> .gitignore)")
    return steps
