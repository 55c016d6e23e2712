"""OpenAI Codex (codex-guide.md): ``.codex/.env`` for Codex itself, ``[shell_environment_policy.set]`` in
``.codex/config.toml`` for the commands it launches."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from cordon_config.providers import DUMMY_KEY

from cordon_setup.context import SetupContext
from cordon_setup.records import Planned, Record, plan_dotenv, plan_toml_table

NAME = "codex"
TABLE = ("shell_environment_policy", "set")
HOST = "api.openai.com"
MARKER = "# cordon: proxy and CA settings (remove with: cordon integration disable codex)"


def agent_dir(ctx: SetupContext) -> Path:
    """Project scope: ``<project>/.codex``; user scope: ``$CODEX_HOME`` or ``~/.codex``."""
    if ctx.paths.scope == "project":
        return ctx.project_dir / ".codex"
    codex_home = ctx.environ.get("CODEX_HOME", "")
    if codex_home:
        return Path(codex_home) if Path(codex_home).is_absolute() else ctx.project_dir / codex_home
    return ctx.home / ".codex"


def codex_env(env: Mapping[str, str]) -> dict[str, str]:
    """The env contract minus any ``CODEX_*`` name: Codex drops those from its ``.env`` (codex-guide.md)."""
    return {k: v for k, v in env.items() if not k.upper().startswith("CODEX_")}


def plan(ctx: SetupContext, directory: Path, old: Mapping[str, Record]) -> list[Planned]:
    """The ``.env`` and ``config.toml`` edits."""
    env = codex_env(ctx.env)
    dotenv = directory / ".env"
    config = directory / "config.toml"
    return [
        plan_dotenv(dotenv, env, marker=MARKER, old=old.get(str(dotenv))),
        plan_toml_table(config, TABLE, env, old=old.get(str(config))),
    ]


def next_steps(ctx: SetupContext, directory: Path) -> list[str]:
    """What the user does after ``cordon setup codex`` (codex-guide.md, in order)."""
    scope = "" if ctx.paths.scope == "project" and ctx.default_config else f" {ctx.scope_flag}"
    steps = []
    if ctx.paths.scope == "project":
        shown = '"$PWD/.codex"' if ctx.project_dir == ctx.cwd else f'"{directory}"'
        steps.append(
            f"export CODEX_HOME={shown}    # so Codex loads {directory / '.env'} at startup"
            " (add it to your shell profile or a project .envrc)"
        )
    elif "CODEX_HOME" not in ctx.environ:
        steps.append(
            f"(Codex reads {directory / '.env'} by default; keep CODEX_HOME unset or point it there)"
        )
    steps.append(f"codex login    # choose the API key option and enter: {DUMMY_KEY}")
    existing = ctx.routes.get(HOST)
    if existing:
        steps.append(f"(cordon.toml already routes {HOST}: route '{existing}')")
    else:
        steps += [
            f"cordon route add{scope} --name openai --host {HOST} --auth-type header "
            "--header-name Authorization --scheme Bearer --source keyring --account openai",
            f"cordon secret set{scope} openai    # the real OpenAI API key, stored in your keyring",
        ]
    if ctx.paths.scope == "project" and (ctx.project_dir / ".git").exists():
        steps.append(
            "keep .codex/.env and .codex/config.toml out of git: they hold this project's proxy token"
            " (e.g. printf '.codex/.env\\n.codex/config.toml\\n' >> .gitignore)"
        )
    steps += [
        f"cordon start{scope}    # or run it in the background: cordon service install{scope}",
        "codex --dangerously-bypass-approvals-and-sandbox",
    ]
    return steps
