"""OpenCode: the dummy key in its own config file (``opencode.json``) and a skill.

OpenCode loads no ``.env`` and has no proxy or CA setting of its own (it is a Bun program, which trusts an
extra CA only from the environment it starts with), so it has no file for the env contract:
``cordon run -- opencode`` is the way to start it. What cordon writes:

* project scope: ``<project>/opencode.json`` and ``<project>/.opencode/skills/cordon/SKILL.md``;
* user scope: ``$XDG_CONFIG_HOME/opencode/opencode.json`` and ``…/opencode/skills/cordon/SKILL.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cordon_config.providers import DUMMY_KEY
from cordon_config.scope import config_home

from cordon_setup.context import SetupContext
from cordon_setup.errors import IntegrationError
from cordon_setup.records import Planned, Record, plan_json_keys, plan_text
from cordon_setup.targets.common import route_steps, scope_suffix, start_step
from cordon_setup.targets.skill import SKILL

NAME = "opencode"
PROVIDER = "anthropic"


def agent_dir(ctx: SetupContext) -> Path:
    """Project scope: the project directory; user scope: ``$XDG_CONFIG_HOME/opencode``."""
    return ctx.project_dir if ctx.paths.scope == "project" else config_home(ctx.environ) / "opencode"


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """``opencode.json`` (the provider's dummy key) and the skill."""
    config = directory / "opencode.json"
    if (directory / "opencode.jsonc").exists() and not config.exists():
        raise IntegrationError(
            f"{directory / 'opencode.jsonc'} exists and cordon edits only plain JSON (opencode.json)",
            hint=f'add "provider": {{"{PROVIDER}": {{"options": {{"apiKey": "{DUMMY_KEY}"}}}}}} to it by hand',
        )
    skills = directory / (".opencode/skills" if ctx.paths.scope == "project" else "skills")
    skill = skills / "cordon" / "SKILL.md"
    return [
        plan_json_keys(config, {("provider", PROVIDER, "options", "apiKey"): DUMMY_KEY},
                       old=old.get(str(config)), private=False),  # the dummy only: no proxy token in it
        plan_text(skill, SKILL, old=old.get(str(skill))),
    ]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup opencode``."""
    return [
        *route_steps(ctx, PROVIDER),
        start_step(ctx),
        f"cordon run{scope_suffix(ctx)} --token {NAME} -- opencode    # OpenCode reads no .env and has no proxy "
        "or CA setting of its own: cordon run gives it the environment",
    ]
