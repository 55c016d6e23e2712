"""Config forms of the tool cordon follows, and what each means in cordon's terms (the one owner of that mapping).

Read by the parser (which accepts them and adds a one-line note) and rewritten by ``cordon config migrate``:

* ``[routes.auth] type = "bearer"`` → ``type = "header"``, ``header_name = "Authorization"``, ``scheme = "Bearer"``
  (a ``header_name``/``scheme`` given with it is kept);
* ``[routes.auth] type = "api_key"`` → ``type = "header"`` with its ``header_name`` (default ``x-api-key``) and no
  scheme;
* ``[[secrets.providers]]`` with ``type = "1password"`` and ``op_path`` (or ``path``) → ``[secrets] op_path``.

Stdlib only: imported by the parser on every load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MIGRATE = "cordon config migrate"

#: legacy auth type -> (header_name default, scheme default, keys it may carry)
LEGACY_AUTH: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "bearer": ("Authorization", "Bearer", ("type", "header_name", "scheme", "secret")),
    "api_key": ("x-api-key", None, ("type", "header_name", "scheme", "secret")),
}
ONEPASSWORD_TYPES = ("1password", "onepassword", "op")
PROVIDER_KEYS = ("type", "name", "op_path", "path")


def is_legacy_auth(kind: object) -> bool:
    return isinstance(kind, str) and kind in LEGACY_AUTH


def header_auth_of(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The cordon ``header`` auth table a legacy one means (``secret`` left out)."""
    header_default, scheme_default, _ = LEGACY_AUTH[str(auth["type"])]
    out: dict[str, Any] = {"type": "header", "header_name": auth.get("header_name", header_default)}
    scheme = auth.get("scheme", scheme_default)
    if scheme is not None:
        out["scheme"] = scheme
    return out


def describe_header(table: Mapping[str, Any]) -> str:
    """``type = "header", header_name = "…"[, scheme = "…"]``."""
    text = f'type = "header", header_name = "{table["header_name"]}"'
    return text + (f', scheme = "{table["scheme"]}"' if "scheme" in table else "")


def auth_note(route: str, auth: Mapping[str, Any]) -> str:
    """The one line that says what a legacy auth type means."""
    return (f'route {route}: auth type "{auth["type"]}" means {describe_header(header_auth_of(auth))} '
            f"(`{MIGRATE}` rewrites it)")


@dataclass(frozen=True, slots=True)
class Providers:
    """What ``[[secrets.providers]]`` says: the ``op`` path (None when it names none) and any problems."""

    op_path: str | None
    problems: tuple[tuple[int, str, str], ...]  # (entry index, key, message)


def read_providers(entries: object) -> Providers:
    """Read ``[[secrets.providers]]``: 1Password entries give the ``op`` path; anything else is a problem."""
    if not isinstance(entries, list):
        return Providers(None, ((0, "", "must be an array of tables ([[secrets.providers]])"),))
    op_path: str | None = None
    problems: list[tuple[int, str, str]] = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            problems.append((index, "", "must be a table"))
            continue
        kind = entry.get("type", entry.get("name"))
        if kind not in ONEPASSWORD_TYPES:
            problems.append((index, "type", f"provider {kind!r} has no meaning in cordon (only 1password does: "
                             "keyring, env, file and command are route secret sources)"))
            continue
        for key in entry:
            if key not in PROVIDER_KEYS:
                problems.append((index, key, f'unknown key "{key}" in a 1password provider'))
        path = entry.get("op_path", entry.get("path"))
        if path is None:
            continue
        if not isinstance(path, str) or not path:
            problems.append((index, "op_path", "op_path must be a non-empty string"))
        elif op_path is not None and path != op_path:
            problems.append((index, "op_path", f"a second 1password provider names another op ({path})"))
        else:
            op_path = path
    return Providers(op_path, tuple(problems))


def providers_note(op_path: str | None) -> str:
    """The one line that says what ``[[secrets.providers]]`` means."""
    meaning = f'[secrets] op_path = "{op_path}"' if op_path else "nothing beyond cordon's defaults (op on PATH)"
    return f"[[secrets.providers]] means {meaning} (`{MIGRATE}` rewrites it)"
