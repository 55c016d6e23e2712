"""``cordon setup [INTEGRATION]``: base setup, then the integration's token and files, then next steps."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cordon_config.files import check_writable
from cordon_config.scope import ScopePaths

from cordon_setup import realkeys
from cordon_setup.apply import Applied, apply_changes, backup_path
from cordon_setup.base import DEFAULT_PORT, ensure_base_setup, ensure_token, read_config_facts, token_value
from cordon_setup.context import SetupContext, cordon_command, home_dir
from cordon_setup.envvars import env_contract
from cordon_setup.integrations import IntegrationPlan, plan_integration, target
from cordon_setup.plan import FileChange
from cordon_setup.realkeys import Destination, RealKey
from cordon_setup.rotate import rewrite_integrations

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
    notes: list[str] = field(default_factory=list)  # what the integration did beyond its files
    masks: dict[str, str] = field(default_factory=dict)
    declined: bool = False
    unapproved: list[str] = field(default_factory=list)  # refusal lines: what `cordon start` would refuse
    key_notes: list[str] = field(default_factory=list)  # real keys moved into cordon (stdout)
    key_warnings: list[str] = field(default_factory=list)  # real keys left where the agent reads them (stderr)

    @property
    def changed(self) -> bool:
        agent = self.plan is not None and any(c.changed for c in self.plan.changes)
        tightened = any(a.tightened_from is not None for a in self.applied)
        return bool(self.base) or agent or tightened


def build_context(
    paths: ScopePaths,
    integration: str,
    *,
    port: int,
    token: str,
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
    port: int | None = None,
    upstream_ca_file: Path | None = None,
    secret_ttl: float | None = None,
    move_key: Callable[[RealKey, Destination], bool] | None = None,
) -> SetupOutcome:
    """Base setup, then (with ``integration``) its client token and files.

    The integration is planned once before anything is written, so a broken agent file (invalid JSON or
    TOML), a symlink at one or a directory that cannot be written stops setup before it changes anything.
    ``confirm`` (TTY without ``--yes``) sees the plan of existing agent files about to change and may
    decline. ``move_key`` (TTY, or ``--move-keys``) is asked about each real provider key in those files:
    yes moves it into the keyring of its route and writes the dummy in its place; without it (or on no)
    setup warns with the commands. ``port``, ``upstream_ca_file`` and ``secret_ttl`` go into cordon.toml;
    a new port is also written into the files of the scope's other integrations.
    """
    outcome = SetupOutcome(paths, integration, dry_run)
    before = read_config_facts(paths)
    if before is None and not dry_run:
        check_writable(paths.config_path)  # first the file the user knows, before any agent file
    if integration is not None:
        module = target(integration)
        if hasattr(module, "preflight"):
            module.preflight(environ, home_dir(environ))  # raises before anything is written
        probe = build_context(
            paths,
            integration,
            port=DEFAULT_PORT,
            token=DRY_RUN_TOKEN,
            environ=environ,
            cwd=cwd,
            cordon_cmd=cordon_cmd,
        )
        for change in plan_integration(integration, probe).all_changes:  # raises on an unreadable agent file
            if not dry_run:
                check_writable(change.path)
    outcome.base = ensure_base_setup(paths, progress=progress, dry_run=dry_run, port=port,
                                     upstream_ca_file=upstream_ca_file, secret_ttl=secret_ttl)
    facts = read_config_facts(paths)
    if dry_run:
        listen = _planned_port(outcome.base, facts.listen if facts is not None else DEFAULT_PORT)
    else:
        assert facts is not None
        listen = facts.listen
        if before is not None and before.listen != listen:
            for change in rewrite_integrations(paths, None):
                if not change.summary and change.path:
                    progress(f"rewrote {change.path} (port {listen})")
    outcome.unapproved = unapproved_lines(paths)
    if integration is None:
        return outcome
    token = token_value(paths, integration)
    if token is None:
        token = DRY_RUN_TOKEN if dry_run else ensure_token(paths, integration)
    outcome.masks = {token: f"<token:{integration}>"}
    ctx = build_context(
        paths, integration, port=listen, token=token, environ=environ, cwd=cwd, cordon_cmd=cordon_cmd
    )
    plan = plan_integration(integration, ctx)
    outcome.masks.update(realkeys.masks(plan.real_keys))
    moved: list[str] = []
    if plan.real_keys and not dry_run and move_key is not None:
        moved = _move_keys(paths, plan.real_keys, move_key, outcome)
        if moved:
            ctx = build_context(  # the route may be new: next steps say so
                paths, integration, port=listen, token=token, environ=environ, cwd=cwd, cordon_cmd=cordon_cmd
            )
            plan = plan_integration(integration, ctx, dummies=moved)
    outcome.key_warnings += _key_warnings(paths, integration, plan, moved)
    outcome.plan = plan
    outcome.next_steps = module.next_steps(ctx, plan.agent_dir)
    if dry_run:
        return outcome
    touches_existing = [c for c in plan.changes if c.changed and c.before is not None]
    if touches_existing and confirm is not None and not confirm(plan, outcome.masks):
        outcome.declined = True
        return outcome
    outcome.applied = apply_changes(plan.all_changes)
    if hasattr(module, "after_apply") and any(c.changed for c in plan.changes):
        outcome.notes = module.after_apply(ctx, plan.agent_dir)
    return outcome


def _move_keys(paths: ScopePaths, keys: list[RealKey], ask: Callable[[RealKey, Destination], bool],
               outcome: SetupOutcome) -> list[str]:
    """Offer each key (once per variable and value); returns the variables moved into cordon."""
    moved: list[str] = []
    seen: set[tuple[str, str]] = set()
    for key in keys:
        if (key.variable, key.value) in seen:
            continue
        seen.add((key.variable, key.value))
        where = realkeys.destination(paths, key)
        if where.other_source is not None or not ask(key, where):
            continue
        try:
            outcome.key_notes += realkeys.move(paths, key, where)
        except realkeys.MoveError as exc:
            outcome.key_warnings.append(f"cordon: {exc}" + (f"\nhint: {exc.hint}" if exc.hint else ""))
            continue
        moved.append(key.variable)
    return moved


def _key_warnings(paths: ScopePaths, integration: str, plan: IntegrationPlan, moved: list[str]) -> list[str]:
    """The exact commands for every real key the planned files still hold, or held before setup replaced it
    (not for those just ``moved`` into cordon)."""
    flag = paths.flag
    planned = {change.path: change for change in plan.changes}
    records = {Path(r["path"]): r for r in plan.manifest["files"]}
    lines: list[str] = []
    for key in plan.real_keys:
        if key.variable in moved:
            continue
        change, record = planned.get(key.path), records.get(key.path, {})
        after = change.after if change is not None else None
        still = any(k.variable == key.variable for k in realkeys.keys_in(
            key.path, record.get("format", ""), after, record.get("table")))
        backup = Path(record["backup"]) if record.get("backup") else None
        where = realkeys.destination(paths, key)
        lines += realkeys.warning(key, where, integration, flag, still_there=still, backup=backup)
    return lines


def unapproved_lines(paths: ScopePaths) -> list[str]:
    """What ``cordon start`` would refuse in the scope's cordon.toml (setup approves only what it writes)."""
    from cordon_config import ConfigError, load_config
    from cordon_config.approvals import check_approved, refusal_lines

    try:
        config = load_config(paths.config_path)
    except (ConfigError, OSError):
        return []
    return refusal_lines(check_approved(config, paths), paths, flag=paths.flag)


def _planned_port(base: list[FileChange | str], current: int) -> int:
    """The port of the cordon.toml a dry run would write (``current`` when it would not change it)."""
    import tomllib

    for item in base:
        if isinstance(item, FileChange) and item.after is not None and item.path.name.endswith(".toml"):
            return int(tomllib.loads(item.after.decode("utf-8")).get("listen", DEFAULT_PORT))
    return current


def describe(outcome: SetupOutcome) -> list[str]:
    """One line per agent file written, naming the backup when one was made and a mode made private."""
    lines = []
    for applied in outcome.applied:
        change = applied.change
        if change.summary:
            continue
        private = (f" (mode {applied.tightened_from:04o} -> 0600: it holds the proxy token)"
                   if applied.tightened_from is not None else "")
        if not change.changed:
            lines.append(f"made {change.path} private{private}")
            continue
        line = f"{'created' if change.before is None else 'updated'} {change.path}" + private
        kept = change.backup_path or backup_path(change.path)
        if applied.backup is not None:
            line += f" (original saved as {_shown(applied.backup, change.path)})"
        elif change.before is not None and change.backup and kept.exists():
            line += f" (original kept in {_shown(kept, change.path)})"
        lines.append(line)
    return lines


def _shown(backup: Path, beside: Path) -> str:
    """The backup's name when it sits beside the file, its full path when it lives elsewhere (the state dir)."""
    return backup.name if backup.parent == beside.parent else str(backup)
