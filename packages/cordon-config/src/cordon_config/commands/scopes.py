"""`cordon scopes list|prune`: every state directory under $XDG_CONFIG_HOME/cordon, and removing the ones whose
project is gone."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cordon_config.commands.common import FAILED, OK, UsageError, is_tty, print_json
from cordon_config.scopes import KnownScope, known_scopes, listen_port, remove_state_dir


def _state(scope: KnownScope) -> str:
    if scope.config_path is None:
        return "unrecorded"
    return "gone" if scope.gone else "ok"


def _row(scope: KnownScope) -> dict[str, Any]:
    port = listen_port(scope.config_path) if scope.config_path is not None and not scope.gone else None
    return {"namespace": scope.namespace, "kind": scope.kind, "state": _state(scope),
            "config": str(scope.config_path) if scope.config_path else None, "port": port,
            "state_dir": str(scope.state_dir)}


def run_scopes(args: argparse.Namespace) -> int:
    scopes = known_scopes()
    if args.action == "list":
        rows = [_row(scope) for scope in scopes]
        if args.json:
            print_json(rows)
            return OK
        if not rows:
            print("no cordon scopes yet (`cordon setup` creates one)")
            return OK
        table = [("NAMESPACE", "PORT", "STATE", "CONFIG")] + [
            (row["namespace"], str(row["port"] or "-"), row["state"], row["config"] or "(no scope.json)")
            for row in rows]
        widths = [max(len(line[i]) for line in table) for i in range(3)]
        for line in table:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line[:3])) + "  " + line[3])
        if any(row["state"] == "unrecorded" for row in rows):
            print("unrecorded: set up before cordon recorded scopes; `cordon setup` in its project records it")
        return OK
    gone = [scope for scope in scopes if scope.gone]
    if not gone:
        print("nothing to prune: every recorded scope's cordon.toml still exists")
        return OK
    print(f"{len(gone)} scope{'' if len(gone) == 1 else 's'} whose cordon.toml is gone:")
    for scope in gone:
        print(f"  {scope.state_dir}  (was {scope.config_path})")
    if args.dry_run:
        print("dry run: nothing was removed")
        return OK
    if not args.yes:
        if not is_tty(sys.stdin):
            raise UsageError(f"refusing to remove {len(gone)} state director{'y' if len(gone) == 1 else 'ies'} "
                             "without confirmation", "pass --yes (or look first with --dry-run)")
        answer = input(f"remove {'it' if len(gone) == 1 else 'them'} (CA, tokens, logs)? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return FAILED
    for scope in gone:
        remove_state_dir(scope)
    print(f"removed {len(gone)} state director{'y' if len(gone) == 1 else 'ies'}")
    return OK
