"""`cordon config migrate`: rewrite the legacy forms of cordon.toml (see ``cordon_config.legacy``)."""

from __future__ import annotations

import argparse

from cordon_config.commands.common import OK, Failure, print_json, scope_of
from cordon_config.errors import ConfigError


def run_migrate(args: argparse.Namespace) -> int:
    from cordon_config.migrate import backup_path, migrate_config

    paths = scope_of(args)
    try:
        changes = migrate_config(paths.config_path, dry_run=args.dry_run)
    except ConfigError as exc:
        raise Failure(exc.first_line, "check it with: cordon doctor") from None
    if args.json:
        print_json({"config": str(paths.config_path), "changes": changes, "written": bool(changes) and
                    not args.dry_run})
        return OK
    if not changes:
        print(f"nothing to migrate: {paths.config_path} uses cordon's own forms")
        return OK
    for line in changes:
        print(line)
    if args.dry_run:
        print("dry run: nothing was written")
    else:
        print(f"rewrote {paths.config_path} (as it was: {backup_path(paths.config_path)})")
    return OK
