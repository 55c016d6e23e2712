"""``cordon setup [INTEGRATION]``: base setup, then the integration's token and files, then next steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.scope import ScopePaths

from cordon_setup.apply import Applied, apply_changes, backup_path
from cordon_setup.base import DEFAULT_PORT, ensure_base_setup, ensure_token, read_config_facts, token_value
from cordon_setup.context import SetupContext, cordon_command, home_dir
from cordon_setup.envvars import env_contract
from cordon_setup.integrations import IntegrationPlan, plan_integration, target
from cordon_setup.plan import FileChange

DRY_RUN_TOKEN = "cordon-dry-run-token"


@dataclass(slots=True)
class SetupOutcome:
    """What setup did (or, with ``dry_run``, would do)."""

    paths: ScopePaths
    integration: str | None
    dry_run: bool
    base: list[FileChange | str] = field(default_factory=list)
    plan: IntegrationPlan | None = None
    applied: list[Applied] = field(default_factory=list)
    next_steps: list[str] = field(default_factory=list)
    masks: dict[str, str] = field(default_factory=dict)
    declined: bool = False

    @property
    def changed(self) -> bool:
        agent = self.plan is not None and any(c.changed for c in self.plan.changes)
        return bool(self.base) or agent


def build_context(
    paths: ScopePaths,
    integration: str,
    *,
    port: int,
    token: str | None,
    environ: Mapping[str, str],
    cwd: Path,
    cordon_cmd: str | None = None,
) -> SetupContext:
    """The context an integration plans from (env contract with that integration's token)."""
    facts = read_config_facts(paths)
    env = env_contract(paths, port, token, ca_cert=facts.ca_cert if facts else None,
                       routed_hosts=facts.routes if facts else ())
    return SetupContext(
        paths=paths,
        port=port,
        env=env,
        cwd=cwd,
        home=home_dir(environ),
        environ=environ,
        cordon_cmd=cordon_cmd or cordon_command(environ),
        routes=dict(facts.routes) if facts else {},
    )


def run_setup(
    paths: ScopePaths,
    integration: str | None,
    *,
    environ: Mapping[str, str],
    cwd: Path,
    dry_run: bool = False,
    confirm: Callable[[IntegrationPlan, dict[str, str]], bool] | None = None,
    progress: Callable[[str], object] = print,
    cordon_cmd: str | None = None,
) -> SetupOutcome:
    """Base setup, then (with ``integration``) its client token and files.

    The integration is planned once before anything is written, so a broken agent file (invalid JSON or
    TOML) stops setup before it changes anything. ``confirm`` (TTY without ``--yes``) sees the plan of
    existing agent files about to change and may decline.
    """
    outcome = SetupOutcome(paths, integration, dry_run)
    if integration is not None:
        module = target(integration)
        probe = build_context(
            paths,
            integration,
            port=DEFAULT_PORT,
            token=DRY_RUN_TOKEN,
            environ=environ,
            cwd=cwd,
            cordon_cmd=cordon_cmd,
        )
        plan_integration(integration, probe)  # raises on an unreadable agent file
    outcome.base = ensure_base_setup(paths, progress=progress, dry_run=dry_run)
    if integration is None:
        return outcome
    facts = read_config_facts(paths)
    port = facts.listen if facts is not None else _planned_port(outcome.base)
    token = token_value(paths, integration)
    if token is None:
        token = DRY_RUN_TOKEN if dry_run else ensure_token(paths, integration)
    outcome.masks = {token: f"<token:{integration}>"}
    ctx = build_context(
        paths, integration, port=port, token=token, environ=environ, cwd=cwd, cordon_cmd=cordon_cmd
    )
    plan = plan_integration(integration, ctx)
    outcome.plan = plan
    outcome.next_steps = module.next_steps(ctx, plan.agent_dir)
    if dry_run:
        return outcome
    touches_existing = [c for c in plan.changes if c.changed and c.before is not None]
    if touches_existing and confirm is not None and not confirm(plan, outcome.masks):
        outcome.declined = True
        return outcome
    outcome.applied = apply_changes(plan.all_changes)
    return outcome


def _planned_port(base: list[FileChange | str]) -> int:
    """The port of the cordon.toml a dry run would scaffold."""
    import tomllib

    for item in base:
        if isinstance(item, FileChange) and item.after is not None and item.path.name.endswith(".toml"):
            return int(tomllib.loads(item.after.decode("utf-8")).get("listen", DEFAULT_PORT))
    return DEFAULT_PORT


def describe(outcome: SetupOutcome) -> list[str]:
    """One line per agent file written, naming the backup when one was made."""
    lines = []
    for applied in outcome.applied:
        change = applied.change
        if change.summary:
            continue
        line = f"{'created' if change.before is None else 'updated'} {change.path}"
        if applied.backup is not None:
            line += f" (original saved as {applied.backup.name})"
        elif change.before is not None and change.backup and backup_path(change.path).exists():
            line += f" (original kept in {backup_path(change.path).name})"
        lines.append(line)
    return lines
