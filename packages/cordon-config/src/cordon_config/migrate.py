"""``cordon config migrate``: rewrite the legacy forms (:mod:`cordon_config.legacy`) in cordon's own terms.

Lossless: the comments, order and formatting of everything else are kept (tomlkit), a comment on a rewritten key
moves with it, and the result must load to exactly the configuration the old file meant (same routes, auth,
secrets and ``op`` path) or nothing is written. The file is locked and replaced
atomically, like every edit of cordon.toml; the file as it was is kept as ``<config>.migrate.bak``.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Item, Table

from cordon_config.edit import _add_key, _edit, _ensure_trailing_blank
from cordon_config.errors import ConfigError, ConfigProblem
from cordon_config.files import atomic_write
from cordon_config.legacy import LEGACY_AUTH, describe_header, header_auth_of, read_providers
from cordon_config.parse import load_config, parse_config

__all__ = ["backup_path", "migrate_config"]


def backup_path(file: Path) -> Path:
    """``<config>.migrate.bak``: the file as it was before the last migration."""
    return file.with_name(file.name + ".migrate.bak")


def _with_comment(value: object, old: Item | None) -> Item:
    """``value`` as a tomlkit item carrying ``old``'s end-of-line comment."""
    new = tomlkit.item(value)
    if old is not None and old.trivia.comment:
        new.trivia.comment_ws = old.trivia.comment_ws
        new.trivia.comment = old.trivia.comment
    return new


def _auth(route: Any, changes: list[str]) -> None:
    auth = route.get("auth")
    if not hasattr(auth, "item") or auth.get("type") not in LEGACY_AUTH:
        return
    plain = {k: v for k, v in auth.unwrap().items() if k != "secret"}
    header = header_auth_of(plain)
    auth["type"] = _with_comment("header", auth.item("type"))
    for key in ("header_name", "scheme"):
        if key in header and key not in auth:
            _add_key(auth, key, header[key])
    changes.append(f'route {route.get("name", "?")}: auth type "{plain["type"]}" → {describe_header(header)}')


def _providers(document: Any, changes: list[str]) -> None:
    secrets = document.get("secrets")
    if not isinstance(secrets, Table) or "providers" not in secrets:
        return
    providers = secrets["providers"]
    found = read_providers(providers.unwrap() if isinstance(providers, AoT) else providers)
    comment = None
    if isinstance(providers, AoT):
        for entry in providers:
            for key in ("op_path", "path"):
                if key in entry:
                    comment = entry.item(key)
    if secrets.is_super_table():  # only [[secrets.providers]]: a [secrets] table takes its place
        index = next(i for i, (k, _) in enumerate(document.body) if k is not None and k.key == "secrets")
        del document["secrets"]
        if found.op_path is not None:
            table = tomlkit.table()
            table.add("op_path", _with_comment(found.op_path, comment))
            _ensure_trailing_blank(table)
            document._insert_at(index, "secrets", table)
    else:
        del secrets["providers"]
        if found.op_path is not None and "op_path" not in secrets:
            _add_key(secrets, "op_path", _with_comment(found.op_path, comment))
    where = f'[secrets] op_path = "{found.op_path}"' if found.op_path else "nothing (op is found on PATH)"
    changes.append(f"[[secrets.providers]] → {where}")


def migrate_config(path: str | os.PathLike[str], *, dry_run: bool = False) -> list[str]:
    """Rewrite the legacy forms of the cordon.toml at ``path``; one line per change (empty: nothing to do).

    Raises :class:`ConfigError` when the file does not load, or when the rewrite would not mean the same.
    """
    file = Path(os.path.abspath(path))
    before = load_config(file)
    if not before.notes:
        return []
    changes: list[str] = []

    def change(document: Any) -> None:
        for route in document.get("routes") or []:
            _auth(route, changes)
        _providers(document, changes)
        after = parse_config(tomlkit.dumps(document), file)
        if after.notes or dataclasses.replace(after, notes=()) != dataclasses.replace(before, notes=()):
            problem = ConfigProblem(file, None, None, None, "the rewritten file would not mean the same; nothing "
                                    "was written", "migrate it by hand (docs/configuration.md, legacy forms)")
            raise ConfigError(file, [problem])
        if dry_run:
            raise _DryRun
        # the file exactly as it was before this migration (a .bak of an earlier edit may be older)
        atomic_write(backup_path(file), file.read_bytes(), mode=stat.S_IMODE(file.stat().st_mode))

    try:
        _edit(file, change)
    except _DryRun:
        pass
    return changes


class _DryRun(Exception):
    """Stops the edit after the check, before anything is written."""
