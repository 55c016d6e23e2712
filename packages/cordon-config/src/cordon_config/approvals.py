"""Approvals: cordon honours what decides where a secret goes only as a human approved it.

cordon.toml lives in the project, which the agent writes. Every field that decides where a key goes or what
cordon runs to fetch it (per route: host, port, auth type, header name, scheme, username, ``allow_plain_http``
and the secret reference with all its fields; per listener: the upstream, ``upstream_tls``, the user name and
the secret reference; top-level: the CA paths, ``name_constraints``,
``upstream_ca_file`` and ``[secrets] op_path``) is compared, as parsed and canonicalised (comments, order and
formatting never matter), with the approval record of the scope:

* ``<state dir>/approvals.json`` (0600): per config file, the approved fields of each item, and an
  HMAC-SHA256 over the whole record keyed by
* ``<state dir>/approval.key`` (32 random bytes, 0600, created ``O_EXCL|O_NOFOLLOW`` on the first approval).

The state dir is outside the project (``$XDG_CONFIG_HOME/cordon/...``), where a sandboxed agent cannot write.
``cordon start`` and the reload refuse a config for which :func:`check_approved` returns anything; ``cordon route
add|edit|remove``, ``cordon listener add|edit|remove``, ``cordon setup`` and ``cordon route|listener approve``
record approvals. Stdlib only.

Later sections plug in through :func:`security_items`: one :class:`Item` per thing that can send a secret
somewhere, with its security-relevant fields as flat, JSON-ready values.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cordon_config.files import atomic_write, ensure_key_file, locked, read_key_file, read_private
from cordon_config.model import AuditConfig, BasicAuth, Config, Egress, Listener, Route
from cordon_config.scope import ScopePaths

__all__ = [
    "KEY_NAME", "RECORD_NAME", "ApprovalError", "FieldChange", "Item", "Unapproved", "approve", "approve_command",
    "approved_items", "audit_item", "check_approved", "egress_item", "format_value", "listener_item",
    "record_change", "refusal_lines", "route_item", "security_items", "settings_item",
]

RECORD_NAME = "approvals.json"
KEY_NAME = "approval.key"
VERSION = 1
SETTINGS = "settings"
_MAC_CONTEXT = b"cordon-approvals\0"

Reason = Literal["new", "changed", "unrecorded", "unverified"]


class ApprovalError(OSError):
    """The approval record or its key cannot be written (one line; ``hint`` says what to do)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        return str(self.args[0])


@dataclass(frozen=True, slots=True)
class Item:
    """One thing that decides where a secret goes: ``kind`` (``route``, ``listener`` or ``settings``), its
    ``name`` and its
    security-relevant ``fields`` (flat, JSON-ready, ``None`` values dropped). ``implicit``: the fields that count
    as approved without a record (cordon's own defaults), or None when the item always needs an approval."""

    kind: str
    name: str
    fields: Mapping[str, Any]
    implicit: Mapping[str, Any] | None = None

    @property
    def key(self) -> str:
        """The item's key in the record: ``route:<name>``, or for a whole section ``settings``, ``egress`` …"""
        return self.kind if self.section else f"{self.kind}:{self.name}"

    @property
    def section(self) -> bool:
        """A top-level section (one of its kind), not a named entry such as a route."""
        return self.kind == self.name

    @property
    def label(self) -> str:
        """How messages name it: ``route "openai"``, ``the [tls]/[secrets] settings``, ``the [egress] table``."""
        if self.kind == SETTINGS:
            return "the [tls]/[secrets] settings"
        return f"the [{self.kind}] table" if self.section else f'{self.kind} "{self.name}"'


@dataclass(frozen=True, slots=True)
class FieldChange:
    """One field: what was approved (None: nothing) and what cordon.toml says now (None: absent)."""

    name: str
    before: Any
    after: Any


@dataclass(frozen=True, slots=True)
class Unapproved:
    """An item whose content is not what was approved.

    ``reason``: ``new`` (never approved), ``changed`` (approved with other values), ``unrecorded`` (no approval
    record for this config at all, e.g. a config written by cordon 0.1), ``unverified`` (the record exists but
    does not verify; ``detail`` says why).
    """

    item: Item
    reason: Reason
    changes: tuple[FieldChange, ...] = ()
    detail: str = ""


# -- what is approved -----------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _drop_none(fields: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _plain(value) for key, value in fields.items() if value is not None}


def route_item(route: Route) -> Item:
    """A route's security-relevant fields. Header names are compared case-insensitively (as HTTP does)."""
    auth = route.auth
    basic = isinstance(auth, BasicAuth)
    fields: dict[str, Any] = {
        "host": route.host,
        "port": route.port,
        "auth.type": "basic" if basic else "header",
        "auth.header_name": None if isinstance(auth, BasicAuth) else auth.header_name.lower(),
        "auth.scheme": None if isinstance(auth, BasicAuth) else auth.scheme,
        "auth.username": auth.username if isinstance(auth, BasicAuth) else None,
        "allow_plain_http": route.allow_plain_http,
        "secret.source": route.secret.source,
        # least privilege: the defaults (any method and path, no limit, scrubbing on) are left out, so a route
        # approved before these keys existed stays approved
        "match.methods": route.methods,
        "match.paths": route.paths,
        "limits.requests_per_minute": route.rate_limit.requests_per_minute if route.rate_limit else None,
        "limits.burst": route.rate_limit.burst if route.rate_limit else None,
        "scrub_responses": None if route.scrub_responses else False,
    }
    for key in sorted(route.secret.fields):
        fields[f"secret.{key}"] = route.secret.fields[key]
    return Item("route", route.name, _drop_none(fields))


def listener_item(listener: Listener) -> Item:
    """A PostgreSQL listener's security-relevant fields: where the password goes (the upstream, whether its TLS is
    verified), as whom, and where the password comes from. Its local port and client TLS decide neither."""
    fields: dict[str, Any] = {
        "upstream": listener.upstream,
        "upstream_tls": listener.upstream_tls,
        "auth.type": "password",
        "auth.username": listener.auth.username,
        "secret.source": listener.secret.source,
    }
    for key in sorted(listener.secret.fields):
        fields[f"secret.{key}"] = listener.secret.fields[key]
    return Item("listener", listener.name, _drop_none(fields))


def egress_item(egress: Egress) -> Item:
    """``[egress]``: which hosts without a route the agent may reach. The default (tunnel, no list) needs no
    approval; ``deny`` and every allow entry do, so a widened list is refused until approved."""
    fields = _drop_none({
        "unrouted": egress.unrouted if egress.unrouted != "tunnel" else None,
        "allow": list(egress.allow) or None,
    })
    return Item("egress", "egress", fields, implicit={})


def audit_item(audit: AuditConfig) -> Item:
    """``[audit]``: switching the audit log off, or rotating it away faster, needs an approval."""
    defaults = AuditConfig()
    fields = _drop_none({
        "enabled": None if audit.enabled else False,
        "max_file_bytes": audit.max_file_bytes if audit.max_file_bytes != defaults.max_file_bytes else None,
        "keep_files": audit.keep_files if audit.keep_files != defaults.keep_files else None,
    })
    return Item("audit", "audit", fields, implicit={})


def settings_item(config: Config, paths: ScopePaths) -> Item:
    """The top-level keys that decide trust or run code: the CA paths, ``name_constraints``,
    ``upstream_ca_file`` and ``op_path``. cordon's defaults (the scope's CA, nothing else) need no approval."""
    tls = config.tls
    fields = _drop_none({
        "tls.ca_cert_path": tls.ca_cert_path or paths.ca_cert,
        "tls.ca_key_path": tls.ca_key_path or paths.ca_key,
        "tls.name_constraints": tls.name_constraints,
        "tls.upstream_ca_file": tls.upstream_ca_file,
        "secrets.op_path": config.op_path,
    })
    defaults = _drop_none({"tls.ca_cert_path": paths.ca_cert, "tls.ca_key_path": paths.ca_key})
    return Item(SETTINGS, SETTINGS, fields, implicit=defaults)


def security_items(config: Config, paths: ScopePaths) -> list[Item]:
    """Everything in ``config`` that needs an approval, as :class:`Item` values: the top-level settings, the
    ``[egress]`` and ``[audit]`` tables, each route and each listener."""
    items = [settings_item(config, paths), egress_item(config.egress), audit_item(config.audit)]
    items += [route_item(route) for route in config.routes]
    items += [listener_item(listener) for listener in config.listeners]
    return items


# -- the record -----------------------------------------------------------------------------------------------


def _record_path(paths: ScopePaths) -> Path:
    return paths.state_dir / RECORD_NAME


def _key_path(paths: ScopePaths) -> Path:
    return paths.state_dir / KEY_NAME


def _canonical(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _mac(key: bytes, configs: Mapping[str, Any]) -> str:
    body = _canonical({"version": VERSION, "configs": configs})
    return hmac.new(key, _MAC_CONTEXT + body, hashlib.sha256).hexdigest()


def _read_key(paths: ScopePaths) -> bytes | None:
    return read_key_file(_key_path(paths), "the approval key")


def _read_record(paths: ScopePaths) -> tuple[dict[str, dict[str, dict[str, Any]]] | None, str]:
    """(approved items per config path, "") when the record verifies; (None, "") when there is none;
    (None, why) when it exists but cannot be trusted."""
    try:
        raw = read_private(_record_path(paths), "the approval record")
        if raw is None:
            return None, ""
        key = _read_key(paths)
    except ValueError as exc:
        return None, str(exc)
    if key is None:
        return None, f"its key {_key_path(paths)} is missing"
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, f"{_record_path(paths)} is not JSON"
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("configs"), dict):
        return None, f"{_record_path(paths)} is not an approval record of this cordon version"
    mac = data.get("mac")
    if not isinstance(mac, str) or not hmac.compare_digest(mac, _mac(key, data["configs"])):
        return None, f"{_record_path(paths)} does not verify with its key (changed outside cordon)"
    return data["configs"], ""


def approved_items(paths: ScopePaths, config_path: Path) -> Mapping[str, Mapping[str, Any]]:
    """The approved fields of each item of ``config_path`` (item key → fields) as the scope's record holds them;
    empty when there is no record or it does not verify."""
    configs, _problem = _read_record(paths)
    return (configs or {}).get(str(config_path), {})


def _ensure_key(paths: ScopePaths) -> bytes:
    """The scope's approval key, created (32 random bytes, 0600, ``O_EXCL|O_NOFOLLOW``) when missing."""
    path = _key_path(paths)
    try:
        return ensure_key_file(path, lambda _: _read_key(paths))
    except ValueError as exc:
        raise ApprovalError(str(exc), f"remove it and approve again: rm {shlex.quote(str(path))}") from None
    except FileNotFoundError:  # removed right after another cordon created it
        return _ensure_key(paths)


def _prepare_state_dir(paths: ScopePaths) -> None:
    try:
        paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ApprovalError(f"cannot record the approval in {paths.state_dir}: {exc.strerror}",
                            "run the command as the user who owns it, outside the agent's sandbox") from None


def _update(paths: ScopePaths, config_path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Locked read → ``change(items)`` (the approved items of ``config_path``, a dict to mutate) → MAC → write.

    A record that does not verify is started afresh: only what ``change`` approves now counts.
    """
    _prepare_state_dir(paths)
    record = _record_path(paths)
    try:
        with locked(record):
            key = _ensure_key(paths)
            configs, _problem = _read_record(paths)
            configs = dict(configs or {})
            items = dict(configs.get(str(config_path), {}))
            change(items)
            configs[str(config_path)] = items
            payload = {"version": VERSION, "configs": configs, "mac": _mac(key, configs)}
            atomic_write(record, json.dumps(payload, indent=2, sort_keys=True) + "\n", mode=0o600)
    except ApprovalError:
        raise
    except OSError as exc:
        raise ApprovalError(f"cannot record the approval in {paths.state_dir}: {exc.strerror or exc}",
                            "run the command as the user who owns it, outside the agent's sandbox") from None


# -- checking -------------------------------------------------------------------------------------------------


def _changes(before: Mapping[str, Any] | None, after: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    before = before or {}
    names = list(after) + [name for name in before if name not in after]
    return tuple(FieldChange(name, before.get(name), after.get(name)) for name in names
                 if before.get(name) != after.get(name))


def check_approved(config: Config, paths: ScopePaths) -> list[Unapproved]:
    """Every item of ``config`` whose content is not what was approved in ``paths``' state dir (empty: all
    approved). Never raises for a missing or damaged record: its items come back as ``unrecorded`` or
    ``unverified``. Items removed from the config need no approval and are not listed."""
    configs, problem = _read_record(paths)
    approved = configs.get(str(config.path)) if configs is not None else None
    found: list[Unapproved] = []
    for item in security_items(config, paths):
        recorded = approved.get(item.key) if approved is not None else None
        base = recorded if recorded is not None else item.implicit
        if base is not None and dict(base) == dict(item.fields):
            continue
        reason: Reason
        if problem:
            reason = "unverified"
        elif approved is None:
            reason = "unrecorded"
        else:
            reason = "new" if base is None else "changed"
        found.append(Unapproved(item, reason, _changes(base, item.fields), problem))
    return found


# -- recording ------------------------------------------------------------------------------------------------


def approve(paths: ScopePaths, config: Config, keys: Iterable[str] | None = None, *,
            forget_missing: Iterable[str] = ()) -> None:
    """Record the content of ``config``'s items as approved: those with the given item ``keys``
    (``route:<name>``, ``settings``), or every item when ``keys`` is None (then approvals of items no longer in
    ``config`` are dropped too). ``forget_missing``: item keys to drop. Records exactly ``config`` as parsed
    (what the user was shown), never the file as it is now."""
    every = security_items(config, paths)
    items = {item.key: dict(item.fields) for item in every}
    # a section at cordon's defaults ([egress], [audit] untouched) is approved without a record: none is kept
    defaults = {item.key for item in every if item.implicit is not None and dict(item.implicit) == item.fields}
    wanted = set(items) if keys is None else set(keys)
    unknown = wanted - set(items)
    if unknown:
        raise KeyError(", ".join(sorted(unknown)))

    def change(record: dict[str, Any]) -> None:
        if keys is None:
            for key in [key for key in record if key not in items]:
                del record[key]
        for key in forget_missing:
            record.pop(key, None)
        for key in wanted:
            if key in defaults and key != SETTINGS:
                record.pop(key, None)
            else:
                record[key] = items[key]

    _update(paths, config.path, change)


def record_change(paths: ScopePaths, config_path: Path, before: Item | None, after: Item | None) -> None:
    """Record an edit a person made with a cordon command (``route add|edit|remove``).

    Only the fields the edit changed become approved: ``before`` → ``after`` (None: added / removed). A field
    someone else changed in the file before the edit keeps its approval status, so editing one field of a
    tampered route never approves the tampering.
    """
    def change(record: dict[str, Any]) -> None:
        if after is None:
            if before is not None:
                record.pop(before.key, None)
            return
        if before is None:
            record[after.key] = dict(after.fields)
            return
        approved = dict(record.get(before.key) or before.implicit or {})
        for name in set(before.fields) | set(after.fields):
            old, new = before.fields.get(name), after.fields.get(name)
            if old == new:
                continue
            if new is None:
                approved.pop(name, None)
            else:
                approved[name] = new
        if before.key != after.key:
            record.pop(before.key, None)
        record[after.key] = approved

    _update(paths, Path(config_path), change)


# -- messages -------------------------------------------------------------------------------------------------


def approve_command(names: Sequence[str] | None, flag: str = "", kind: str = "route") -> str:
    """``cordon route approve NAME...`` (``cordon listener approve`` for listeners; ``cordon route approve
    --all``, which approves everything, when ``names`` is None)."""
    if names is None:
        return f"cordon route approve{flag} --all"
    command = "listener" if kind == "listener" else "route"
    return f"cordon {command} approve{flag} {' '.join(shlex.quote(name) for name in names)}"


def format_value(value: Any) -> str:
    """A field value as the messages show it (JSON; ``(none)`` for an absent one)."""
    return "(none)" if value is None else json.dumps(value)


def _summary(changes: Sequence[FieldChange], *, new: bool) -> str:
    if new:
        return ", ".join(f"{c.name} {format_value(c.after)}" for c in changes)
    return ", ".join(f"{c.name} {format_value(c.before)} -> {format_value(c.after)}" for c in changes)


def refusal_lines(unapproved: Sequence[Unapproved], paths: ScopePaths, *, flag: str | None = None) -> list[str]:
    """The lines (without ``cordon: ``) that ``cordon start``, the reload and doctor print: one per item, each
    naming what changed and the command that approves it; one line in all for a config with no record."""
    if not unapproved:
        return []
    flag = paths.flag if flag is None else flag
    review = f"review them with `cordon route list{flag}`, then approve: `{approve_command(None, flag)}`"
    first = unapproved[0]
    if first.reason == "unrecorded":
        return [f"{paths.config_path} has no approval record (written by hand or by cordon 0.1), so cordon will "
                f"not use its routes: {review}"]
    if first.reason == "unverified":
        return [f"the approval record of {paths.config_path} cannot be trusted ({first.detail}), so nothing in it "
                f"counts as approved: {review}"]
    lines = []
    for entry in unapproved:
        item = entry.item
        command = approve_command(None if item.section else [item.name], flag, item.kind)
        if entry.reason == "new":
            what = f"{item.label} is new and not approved ({_summary(entry.changes, new=True)})"
        else:
            what = f"{item.label} changed since it was approved ({_summary(entry.changes, new=False)})"
        lines.append(f"{what}; review it, then run: {command}")
    return lines
