"""Plan, apply and undo an agent integration, keeping a manifest of exactly what was written.

The manifest lives at ``<state dir>/integrations/<name>.json`` (0600: it holds the proxy URLs cordon wrote)
and is what ``cordon integration disable`` and token rotation work from.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from cordon_config.files import refuse_symlinked_dirs
from cordon_config.scope import ScopePaths

from cordon_setup.apply import apply_changes, remove_empty_dirs
from cordon_setup.context import SetupContext, home_dir
from cordon_setup.errors import IntegrationError
from cordon_setup.plan import FileChange, read_agent_file, read_bytes, refuse_linked_dirs
from cordon_setup.realkeys import RealKey, dummies_of, keys_in, planned_keys, private_backup
from cordon_setup.records import Planned, undo_record
from cordon_setup.targets import aider, claude_code, codex, gemini_cli, hermes, openclaw, opencode

INTEGRATIONS: dict[str, ModuleType] = {
    module.NAME: module for module in (codex, claude_code, hermes, openclaw, gemini_cli, opencode, aider)
}
MANIFEST_VERSION = 1


def target(name: str) -> ModuleType:
    """The module of integration ``name``."""
    try:
        return INTEGRATIONS[name]
    except KeyError:
        raise IntegrationError(
            f"unknown integration {name!r}", hint=f"choose one of: {', '.join(INTEGRATIONS)}"
        ) from None


def own_config(name: str, home: Path) -> Path | None:
    """The cordon.toml of the scope integration ``name`` always uses (Hermes, OpenClaw), or None when it
    follows ``--scope``/``--config`` like the others."""
    module = target(name)
    return module.own_config(home) if hasattr(module, "own_config") else None


def manifest_path(paths: ScopePaths, name: str) -> Path:
    """``<state dir>/integrations/<name>.json``."""
    return paths.state_dir / "integrations" / f"{name}.json"


def load_manifest(paths: ScopePaths, name: str) -> dict[str, Any] | None:
    """The manifest of ``name`` in this scope, or None when it is not set up."""
    data = read_bytes(manifest_path(paths, name))
    if data is None:
        return None
    try:
        manifest = json.loads(data)
    except json.JSONDecodeError:
        raise IntegrationError(f"{manifest_path(paths, name)} is damaged (not JSON)") from None
    return manifest if isinstance(manifest, dict) else None


def installed(paths: ScopePaths) -> list[str]:
    """Names of the integrations set up in this scope."""
    directory = paths.state_dir / "integrations"
    return sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []


@dataclass(slots=True)
class IntegrationPlan:
    """The agent-file changes, then the manifest change (applied last).

    ``backup_moves``: an earlier run's backup beside a file that holds a real key moves into the state dir
    (applied first). ``real_keys``: provider keys found in the files as they are now (never printed).
    """

    name: str
    agent_dir: Path
    changes: list[FileChange]
    manifest: dict[str, Any]
    manifest_change: FileChange
    backup_moves: list[FileChange] = field(default_factory=list)
    real_keys: list[RealKey] = field(default_factory=list)

    @property
    def all_changes(self) -> list[FileChange]:
        return [*self.backup_moves, *self.changes, self.manifest_change]


def plan_integration(name: str, ctx: SetupContext, *, agent_dir: Path | None = None,
                     dummies: Iterable[str] = ()) -> IntegrationPlan:
    """Plan integration ``name`` for ``ctx``; a re-run keeps what the first run recorded.

    ``dummies``: provider key variables to write as the dummy (their real value moved into cordon); an earlier
    run's are kept. The backup of a file that holds a real key goes to the state dir, never beside the file.
    """
    module = target(name)
    old = load_manifest(ctx.paths, name)
    old_records = {r["path"]: r for r in (old or {}).get("files", [])}
    directory = agent_dir or module.agent_dir(ctx)
    within = write_root(name, directory, ctx.project_dir, ctx.home)
    refuse_symlinked_dirs(directory / "file", within)  # before anything is read through a linked agent dir
    replaced = sorted(set(dummies_of(old)) | set(dummies))
    if replaced:
        from cordon_config.providers import DUMMY_KEY

        ctx = dataclasses.replace(ctx, env={**ctx.env, **dict.fromkeys(replaced, DUMMY_KEY)})
    planned = module.plan(ctx, directory, old_records)
    real_keys = planned_keys(planned)
    moves: list[FileChange] = []
    planned = [_keep_keys_out_of_backups(ctx.paths, name, item, moves) for item in planned]
    planned = [Planned(dataclasses.replace(p.change, within=within), p.record) for p in planned]
    moves = [dataclasses.replace(m, within=within) for m in moves]
    for item in [*moves, *(p.change for p in planned)]:
        refuse_linked_dirs(item)
    records = [p.record for p in planned]
    new_paths = {r["path"] for r in records}
    records += [r for path, r in old_records.items() if path not in new_paths]
    manifest = {
        "version": MANIFEST_VERSION,
        "integration": name,
        "scope": ctx.paths.scope,
        "config": str(ctx.paths.config_path),
        "token": name,
        "agent_dir": str(directory),
        "cwd": str(ctx.cwd),
        "cordon_cmd": ctx.cordon_cmd,
        "files": records,
    }
    if replaced:
        manifest["dummies"] = replaced
    path = manifest_path(ctx.paths, name)
    after = (json.dumps(manifest, indent=2) + "\n").encode("utf-8")
    change = FileChange(path, read_bytes(path), after, mode=0o600, summary=True)
    return IntegrationPlan(name, directory, [p.change for p in planned], manifest, change, moves, real_keys)


def write_root(name: str, agent_dir: Path, project_dir: Path, home: Path) -> Path:
    """The directory below which no directory on the way to an agent file may be a symlink: the project or home
    when the agent's files live right there (aider, opencode), else the parent of the agent's own directory, so
    a linked ``.codex``, ``~/.claude``, ``$CODEX_HOME`` or ``~/.hermes`` (a scope of its own) is refused; the
    links above it are the user's."""
    if own_config(name, home) is None and agent_dir in (project_dir, home):
        return agent_dir
    return agent_dir.parent


def _keep_keys_out_of_backups(paths: ScopePaths, name: str, item: Planned, moves: list[FileChange]) -> Planned:
    """A file that holds a real key is backed up into the state dir; an earlier run's backup beside it that
    holds one is moved there (``moves``). Everything else keeps its backup beside the file."""
    change, record = item.change, item.record
    path, fmt, table = Path(record["path"]), record["format"], record.get("table")
    private = private_backup(paths, name, path)
    if change.backup and change.before is not None and keys_in(path, fmt, change.before, table):
        record["backup"] = str(private)
        record["backup_created"] = not os.path.lexists(private)
        return Planned(dataclasses.replace(change, backup_path=private), record)
    beside = Path(record["backup"]) if record.get("backup") else None
    if beside is not None and beside.parent == path.parent:
        data = read_agent_file(beside)
        if data is not None and keys_in(beside, fmt, data, table):
            moves.append(FileChange(private, read_agent_file(private), data, mode=0o600, summary=True))
            moves.append(FileChange(beside, data, None, summary=True))
            record["backup"] = str(private)
    return item


@dataclass(slots=True)
class DisableReport:
    """What ``integration disable`` did (or would do)."""

    changes: list[FileChange] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    token_revoked: bool = False


def plan_disable(paths: ScopePaths, name: str) -> tuple[DisableReport, list[str]]:
    """The changes that undo ``name`` (and the directories cordon created, to remove once empty)."""
    target(name)
    manifest = load_manifest(paths, name)
    if manifest is None:
        raise IntegrationError(
            f"{name} is not set up in this scope (no {manifest_path(paths, name)})",
            hint="pass the same --scope/--config you gave to `cordon setup`",
        )
    report = DisableReport()
    dirs: list[str] = []
    directory = Path(manifest.get("agent_dir") or paths.config_path.parent)
    within = write_root(name, directory, paths.config_path.parent, home_dir(os.environ))
    for record in manifest.get("files", []):
        refuse_symlinked_dirs(Path(record["path"]), within)  # nothing read or undone through a linked dir
        if record.get("backup"):
            refuse_symlinked_dirs(Path(record["backup"]), within)
        undo = undo_record(record)
        report.changes += [dataclasses.replace(change, within=within) for change in undo.changes]
        report.left_alone += undo.left_alone
        report.notes += undo.notes
        dirs += undo.dirs
    path = manifest_path(paths, name)
    report.changes.append(FileChange(path, read_bytes(path), None, summary=True))
    return report, dirs


def disable(
    paths: ScopePaths,
    name: str,
    *,
    revoke: Callable[[ScopePaths, str], bool] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DisableReport:
    """Remove exactly what setup wrote for ``name``, then revoke its client token (via ``revoke``) and let the
    integration undo what is not a file (OpenClaw reinstalls its gateway service without cordon's CA)."""
    module = target(name)
    manifest = load_manifest(paths, name) or {}
    report, dirs = plan_disable(paths, name)
    apply_changes(report.changes)
    remove_empty_dirs([*dirs, str(manifest_path(paths, name).parent)])
    if revoke is not None:
        report.token_revoked = revoke(paths, name)
    if hasattr(module, "after_disable"):
        report.notes += module.after_disable(paths, manifest, os.environ if environ is None else environ)
    return report


def replan(
    paths: ScopePaths,
    name: str,
    *,
    port: int,
    env: Mapping[str, str],
    environ: Mapping[str, str],
    home: Path,
) -> IntegrationPlan | None:
    """Plan integration ``name`` again with this env contract, in the places its manifest names (None: not
    set up). Non-empty ``plan.changes`` means its files are stale (old port, token or bundle)."""
    manifest = load_manifest(paths, name)
    if manifest is None:
        return None
    ctx = SetupContext(
        paths=paths,
        port=port,
        env=env,
        cwd=Path(manifest.get("cwd") or paths.config_path.parent),
        home=home,
        environ=environ,
        cordon_cmd=manifest.get("cordon_cmd") or "cordon",
    )
    return plan_integration(name, ctx, agent_dir=Path(manifest["agent_dir"]))


def rewrite(
    paths: ScopePaths,
    name: str,
    *,
    port: int,
    env: Mapping[str, str],
    environ: Mapping[str, str],
    home: Path,
) -> list[FileChange]:
    """Re-plan integration ``name`` with a new env contract (new token or port) in the same places; apply."""
    plan = replan(paths, name, port=port, env=env, environ=environ, home=home)
    if plan is None:
        return []
    return [a.change for a in apply_changes(plan.all_changes)]
