"""Claude Code: ``env`` and a ``UserPromptSubmit`` hook in its settings file, plus a skill."""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from pathlib import Path

from cordon_config.providers import DUMMY_KEY

from cordon_setup.context import SetupContext
from cordon_setup.records import Planned, Record, plan_json_settings, plan_text
from cordon_setup.targets.skill import SKILL

NAME = "claude-code"
EVENT = "UserPromptSubmit"
HOST = "api.anthropic.com"


def agent_dir(ctx: SetupContext) -> Path:
    """Project scope: ``<project>/.claude``; user scope: ``~/.claude``."""
    return ctx.project_dir / ".claude" if ctx.paths.scope == "project" else ctx.home / ".claude"


def settings_path(ctx: SetupContext, directory: Path) -> Path:
    """``settings.local.json`` (project, not committed) or ``settings.json`` (user)."""
    return directory / ("settings.local.json" if ctx.paths.scope == "project" else "settings.json")


def hook_command(ctx: SetupContext) -> str:
    """Exit 0 when this scope's proxy answers (proven by its identity key); otherwise show what ``cordon status``
    says (nothing there, another scope's cordon, something else) and exit 2 (Claude Code blocks the prompt
    and shows stderr)."""
    target = ctx.scope_flag
    start = f"cordon start {target}"
    message = f"cordon: the proxy of this scope is not running, so API calls would fail. Start it with: {start}"
    return (
        f"{ctx.cordon_cmd} status --quiet {target} >/dev/null 2>&1 || "
        f"{{ {ctx.cordon_cmd} status {target} >&2; echo {shlex.quote(message)} >&2; exit 2; }}"
    )


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """The settings edit and the skill file."""
    env = dict(ctx.env)
    env["ANTHROPIC_API_KEY"] = DUMMY_KEY
    settings = settings_path(ctx, directory)
    skill = directory / "skills" / "cordon" / "SKILL.md"
    return [
        plan_json_settings(settings, env, hooks={EVENT: hook_command(ctx)}, old=old.get(str(settings))),
        plan_text(skill, SKILL, old=old.get(str(skill))),
    ]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup claude-code``."""
    scope = "" if ctx.paths.scope == "project" and ctx.default_config else f" {ctx.scope_flag}"
    existing = ctx.routes.get(HOST)
    if existing:
        steps = [f"(cordon.toml already routes {HOST}: route '{existing}')"]
    else:
        steps = [
            f"cordon route add{scope} --name anthropic --host {HOST} --auth-type header "
            "--header-name x-api-key --source keyring --account anthropic",
            f"cordon secret set{scope} anthropic    # the real Anthropic API key, stored in your keyring",
        ]
    return [
        *steps,
        f"cordon start{scope}    # or run it in the background: cordon service install{scope}",
        "claude    # Claude Code reads the env block and the hook from " + str(settings_path(ctx, directory)),
    ]
