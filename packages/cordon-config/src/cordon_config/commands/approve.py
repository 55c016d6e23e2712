"""`cordon route|listener approve NAME...|--all`, and the approval bookkeeping of `route|listener
add|edit|remove`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from cordon_config.approvals import (
    ApprovalError,
    Item,
    Unapproved,
    approve,
    check_approved,
    format_value,
    record_change,
)
from cordon_config.commands.common import (
    OK,
    RESTART,
    Failure,
    UsageError,
    after_routes_changed,
    find_listener,
    find_route,
    is_tty,
    load,
    print_json,
)
from cordon_config.model import Config
from cordon_config.scope import ScopePaths

_REASONS = {
    "new": "new, never approved",
    "changed": "changed since it was approved",
    "unrecorded": "no approval record yet",
    "unverified": "the approval record cannot be trusted",
}


def record(paths: ScopePaths, config: Config, before: Item | None, after: Item | None) -> None:
    """:func:`~cordon_config.approvals.record_change` for a command the user ran; one line on success."""
    try:
        record_change(paths, config.path, before, after)
    except ApprovalError as exc:
        raise Failure(f"cordon.toml was changed, but its approval could not be recorded: {exc}", exc.hint) from None


def _as_json(entry: Unapproved, approved: bool) -> dict[str, Any]:
    item = entry.item
    return {"item": item.key, "kind": item.kind, "name": item.name, "reason": entry.reason,
            "changes": [{"field": c.name, "before": c.before, "after": c.after} for c in entry.changes],
            "approved": approved}


def _show(pending: Sequence[Unapproved]) -> None:
    for entry in pending:
        detail = f": {entry.detail}" if entry.detail else ""
        print(f"{entry.item.label} ({_REASONS[entry.reason]}{detail}):")
        width = max(len(change.name) for change in entry.changes) if entry.changes else 0
        for change in entry.changes:
            print(f"  {change.name.ljust(width)}  {format_value(change.before)} -> {format_value(change.after)}")


def _confirm(count: int, ask: Callable[[str], str]) -> bool:
    answer = ask(f"approve {'this' if count == 1 else f'these {count}'}? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def run_approve(args: argparse.Namespace, kind: str = "route") -> int:
    """Show what is not approved (before → after per field), ask on a terminal (``--yes`` otherwise), record.

    ``kind`` is the command's (``route`` or ``listener``). ``cordon route approve --all`` approves everything in
    cordon.toml (routes, listeners, the [tls]/[secrets] settings); ``cordon listener approve --all`` the
    listeners only."""
    if bool(args.names) == bool(args.all):
        example = "openai" if kind == "route" else "prod-db"
        raise UsageError(f"give the {kind}s to approve, or --all", f"e.g. cordon {kind} approve {example}, or "
                         f"cordon {kind} approve --all after reviewing `cordon {kind} list`")
    paths, config = load(args)
    flag = paths.flag
    pending = check_approved(config, paths)
    if not args.all:
        for name in args.names:
            (find_route if kind == "route" else find_listener)(config, name)  # one clear line for a wrong name
        wanted = set(args.names)
        pending = [entry for entry in pending if entry.item.kind == kind and entry.item.name in wanted]
    elif kind == "listener":
        pending = [entry for entry in pending if entry.item.kind == "listener"]
    if not pending:
        if args.json:
            print_json([])
        elif args.all:
            print(f"nothing to approve: {config.path} is approved as it is")
        else:
            print(f"nothing to approve: {', '.join(args.names)} approved as {config.path} says")
        return OK
    if not args.json:
        _show(pending)
    if not args.yes:
        if not is_tty(sys.stdin):
            if args.json:
                print_json([_as_json(entry, False) for entry in pending])
            raise UsageError("nothing approved: confirm on a terminal or pass --yes",
                             f"review the changes above, then: cordon {kind} approve{flag} "
                             + ("--all" if args.all else " ".join(args.names)) + " --yes")
        if not _confirm(len(pending), input):
            print("nothing approved")
            return OK
    keys = None if args.all and kind == "route" else [entry.item.key for entry in pending]
    try:
        approve(paths, config, keys)
    except ApprovalError as exc:
        raise Failure(str(exc), exc.hint) from None
    if args.json:
        print_json([_as_json(entry, True) for entry in pending])
        with contextlib.redirect_stdout(sys.stderr):  # the hook's lines must not break the JSON
            return after_routes_changed(paths)
    names = ", ".join(entry.item.label for entry in pending)
    print(f"approved {names} (recorded in {paths.state_dir})")
    status = after_routes_changed(paths)  # the CA now permits the approved hosts
    print(RESTART)
    return status
