"""Lossless edits of cordon.toml with tomlkit: everything outside the changed table survives byte for byte.

Each edit takes an advisory lock (``files.locked``, on the config's directory), reads the file, changes the tomlkit document,
validates the result (:class:`~cordon_config.errors.ConfigError` and nothing written when invalid), keeps a
one-time ``.bak`` of the original, and replaces the file atomically.
"""

from __future__ import annotations

import dataclasses
import errno
import os
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar, overload

import tomlkit
from tomlkit.exceptions import ParseError, TOMLKitError
from tomlkit.items import AoT, InlineTable, Table
from tomlkit.toml_document import TOMLDocument

from cordon_config.errors import ConfigError, ConfigNotFound, ConfigProblem, ListenerNotFound, RouteNotFound
from cordon_config.files import atomic_write, backup_once, locked, read_no_follow
from cordon_config.locate import key_lines
from cordon_config.model import (
    BasicAuth,
    Config,
    Egress,
    HeaderAuth,
    Listener,
    PasswordAuth,
    RateLimit,
    Route,
    SecretRef,
)
from cordon_config.parse import DEFAULT_KEYRING_SERVICE, decode_config, parse_config
from cordon_config.ports import free_port

_UNSET: Any = object()
_T = TypeVar("_T")  # what an edit's ``change`` returns

__all__ = [
    "UNSET", "ListenerExists", "RouteExists", "add_listener", "add_route", "config_lock", "edit_egress",
    "edit_listener", "edit_route", "free_port", "listener_to_dict", "listener_to_toml", "remove_listener",
    "remove_route",
    "route_to_dict", "route_to_toml", "scaffold_config", "scaffold_text", "set_listen", "set_values",
]
UNSET: Any = _UNSET  # for set_values: remove the key


class RouteExists(ValueError):
    """A route with that name (or host) is already configured."""


class ListenerExists(ValueError):
    """A route or listener with that name is already configured."""


def _value(item: object) -> str:
    return tomlkit.item(item).as_string()


def scaffold_text(*, listen: int, ca_cert_path: str | os.PathLike[str], ca_key_path: str | os.PathLike[str]) -> str:
    """The commented cordon.toml that setup writes: listen, [tls], no routes, an example route in comments."""
    return f"""\
# cordon.toml: what the cordon proxy injects, and where.
# Change it with `cordon route add|edit|remove` or by hand; restart the proxy (`cordon start`) afterwards.

listen = {int(listen)}  # port on 127.0.0.1 (the address is not configurable)

# secret_ttl = 10  # seconds a fetched secret stays in memory (0 = fetch on every request)

[tls]
enabled = true
ca_cert_path = {_value(str(ca_cert_path))}
ca_key_path = {_value(str(ca_key_path))}
# upstream_ca_file = "/abs/extra-roots.pem"  # extra roots for upstream TLS, added to the system store

# One [[routes]] table per host, for example:
#
# [[routes]]
# name = "openai"
# [routes.match]
# host = "api.openai.com"
# [routes.auth]
# type = "header"                  # or "basic" with username = "..."
# header_name = "Authorization"
# scheme = "Bearer"
# [routes.auth.secret]
# source = "keyring"               # keyring | 1password | env | file | command
# account = "openai"
"""


def config_lock(path: Path) -> AbstractContextManager[None]:
    """Hold the exclusive advisory lock of ``files.locked`` (serialises read-modify-write of the config)."""
    return locked(path)


def scaffold_config(path: str | os.PathLike[str], *, listen: int, ca_cert_path: str | os.PathLike[str],
                    ca_key_path: str | os.PathLike[str]) -> Config:
    """Create a new cordon.toml (no routes). Raises FileExistsError when the file already exists."""
    file = Path(os.path.abspath(path))
    text = scaffold_text(listen=listen, ca_cert_path=ca_cert_path, ca_key_path=ca_key_path)
    config = parse_config(text, file)
    file.parent.mkdir(parents=True, exist_ok=True)
    with config_lock(file):
        if file.exists():
            raise FileExistsError(errno.EEXIST, "config file exists already", str(file))
        atomic_write(file, text, mode=0o644)
    return config


@overload
def _edit_text(path: str | os.PathLike[str], change: Callable[[str], tuple[str, None]], *, write: bool = True
               ) -> Config: ...
@overload
def _edit_text(path: str | os.PathLike[str], change: Callable[[str], tuple[str, _T]], *, write: bool = True
               ) -> _T: ...
def _edit_text(path: str | os.PathLike[str], change: Callable[[str], tuple[str, object]], *, write: bool = True
               ) -> object:
    """Locked read → ``change(text) -> (new_text, result)`` → validate → .bak once → atomic write (``write``)."""
    file = Path(os.path.abspath(path))
    with config_lock(file):
        raw = read_no_follow(file)  # a symlinked cordon.toml is refused, never replaced by a copy of its target
        if raw is None:
            raise ConfigNotFound(file, [ConfigProblem(file, None, None, None, "file not found",
                                                      "run `cordon setup` to create it")])
        text = decode_config(raw, file)  # newlines kept as they are (a CRLF file stays CRLF)
        new_text, result = change(text)
        if "\r\n" in text and "\n" not in text.replace("\r\n", ""):
            new_text = new_text.replace("\r\n", "\n").replace("\n", "\r\n")  # keep a CRLF file CRLF
        config = parse_config(new_text, file)
        if new_text != text and write:
            backup_once(file)
            atomic_write(file, new_text)
    return result if result is not None else config


@overload
def _edit(path: str | os.PathLike[str], change: Callable[[TOMLDocument], None], *, write: bool = True) -> Config: ...
@overload
def _edit(path: str | os.PathLike[str], change: Callable[[TOMLDocument], _T], *, write: bool = True) -> _T: ...
def _edit(path: str | os.PathLike[str], change: Callable[[TOMLDocument], object], *, write: bool = True) -> object:
    """Like :func:`_edit_text`, with ``change`` mutating the tomlkit document."""
    file = Path(os.path.abspath(path))

    def on_text(text: str) -> tuple[str, object]:
        try:
            document = tomlkit.parse(text)
        except ParseError as exc:
            raise ConfigError(file, [ConfigProblem(file, exc.line, None, None, f"not valid TOML: {exc}")]) from None
        except TOMLKitError as exc:
            raise ConfigError(file, [ConfigProblem(file, None, None, None, f"not valid TOML: {exc}")]) from None
        result = change(document)
        return tomlkit.dumps(document), result

    return _edit_text(file, on_text, write=write)


# -- routes as TOML -----------------------------------------------------------------------------------------


def route_to_dict(route: Route) -> dict[str, Any]:
    """The cordon.toml table of ``route`` as plain data (defaults omitted)."""
    match: dict[str, Any] = {"host": route.host}
    if route.port is not None:
        match["port"] = route.port
    if route.methods is not None:
        match["methods"] = list(route.methods)
    if route.paths is not None:
        match["paths"] = list(route.paths)
    auth: dict[str, Any]
    if isinstance(route.auth, BasicAuth):
        auth = {"type": "basic", "username": route.auth.username}
    else:
        auth = {"type": "header", "header_name": route.auth.header_name}
        if route.auth.scheme is not None:
            auth["scheme"] = route.auth.scheme
    secret: dict[str, Any] = {"source": route.secret.source}
    for key, value in route.secret.fields.items():
        if route.secret.source == "keyring" and key == "service" and value == DEFAULT_KEYRING_SERVICE:
            continue
        secret[key] = list(value) if isinstance(value, tuple) else value
    auth["secret"] = secret
    data: dict[str, Any] = {"name": route.name, "match": match, "auth": auth}
    if route.allow_plain_http:
        data["allow_plain_http"] = True
    if not route.scrub_responses:
        data["scrub_responses"] = False
    if route.rate_limit is not None:
        limits: dict[str, Any] = {"requests_per_minute": route.rate_limit.requests_per_minute}
        if route.rate_limit.burst is not None:
            limits["burst"] = route.rate_limit.burst
        data["limits"] = limits
    return data


def route_to_toml(route: Route) -> str:
    """``route`` as a ``[[routes]]`` block in the layout of the spec (sub-tables, no inline tables)."""
    data = route_to_dict(route)
    lines = ["[[routes]]", f"name = {_value(data['name'])}"]
    if "allow_plain_http" in data:
        lines.append("allow_plain_http = true")
    if "scrub_responses" in data:
        lines.append("scrub_responses = false")
    lines.append("[routes.match]")
    lines += [f"{key} = {_value(value)}" for key, value in data["match"].items()]
    if "limits" in data:
        lines.append("[routes.limits]")
        lines += [f"{key} = {_value(value)}" for key, value in data["limits"].items()]
    lines.append("[routes.auth]")
    lines += [f"{key} = {_value(value)}" for key, value in data["auth"].items() if key != "secret"]
    lines.append("[routes.auth.secret]")
    lines += [f"{key} = {_value(value)}" for key, value in data["auth"]["secret"].items()]
    return "\n".join(lines) + "\n"


def _routes(document: TOMLDocument, file: Path, section: str = "routes") -> AoT | None:
    routes = document.get(section)
    if routes is None:
        return None
    if not isinstance(routes, AoT):
        raise ConfigError(file, [ConfigProblem(file, None, None, section, f"{section} is not written as "
                                               f"[[{section}]] tables, so cordon cannot edit it",
                                               "edit the file by hand")])
    return routes


def _index(routes: AoT | None, name: str, file: Path, missing: type[KeyError] = RouteNotFound) -> int:
    for index, table in enumerate(routes or []):
        if table.get("name") == name:
            return index
    raise missing(name, file)


def add_route(path: str | os.PathLike[str], route: Route) -> Config:
    """Append ``route`` as a new ``[[routes]]`` table; returns the validated new config.

    Raises :class:`RouteExists` when the name is taken, :class:`ConfigError` when the result is invalid.
    """
    file = Path(os.path.abspath(path))

    def change(document: TOMLDocument) -> None:
        routes = _routes(document, file)
        for table in routes or []:
            if table.get("name") == route.name:
                raise RouteExists(f"a route named {route.name!r} already exists in {file}")
        _append(document, "routes", route_to_toml(route), routes)

    return _edit(file, change)


def _append(document: TOMLDocument, section: str, block_text: str, existing: AoT | None) -> None:
    """Append the one-table ``[[section]]`` text ``block_text`` to the document's array of tables."""
    block = tomlkit.parse(block_text)[section][0]
    text = tomlkit.dumps(document)
    if existing is None:
        if not text.endswith("\n\n") and text:
            document.add(tomlkit.nl())
        document.add(section, tomlkit.aot())
        existing = document[section]
    else:
        _ensure_trailing_blank(existing[-1])
    existing.append(block)
    keys = [key for key, _ in document.body]
    if keys and keys[-1] is not None and keys[-1].key != section:
        _ensure_trailing_blank(block)  # a table follows: keep a blank line before it


def _ensure_trailing_blank(table: Table) -> None:
    """Make sure the table's text ends with a blank line so an appended table is set apart."""
    text = table.as_string()
    if not text.endswith("\n\n"):
        inner = table
        while True:
            body = inner.value.body
            if not body:
                break
            key, item = body[-1]
            if isinstance(item, Table) and key is not None:
                inner = item
                continue
            break
        inner.add(tomlkit.nl())


def _apply(table: Any, old: Mapping[str, Any], new: Mapping[str, Any]) -> None:
    """Change ``table`` from ``old`` to ``new``, touching only the keys whose values differ."""
    for key, value in new.items():
        if key in old and old[key] == value:
            continue
        current = table.get(key)
        if isinstance(value, dict) and isinstance(current, InlineTable):
            table[key] = _to_inline(value)
        elif isinstance(value, dict) and current is not None and hasattr(current, "items"):
            previous = old.get(key)
            _apply(current, previous if isinstance(previous, dict) else {}, value)
        elif isinstance(value, dict):
            table[key] = _to_table(value)
        elif key not in table:
            _add_key(table, key, value)
        else:
            table[key] = value
    for key in old:
        if key not in new and key in table:
            del table[key]


def _add_key(table: Any, key: str, value: Any) -> None:
    """Add a new plain key right after the table's last plain key, as a person would: appended, it would land
    after the blank lines and comments that end the table (which belong to what follows)."""
    container = getattr(table, "value", None)
    body = getattr(container, "body", None)
    last = None
    for index, (name, item) in enumerate(body or ()):
        if name is not None and not isinstance(item, Table | AoT):
            last = index
    if (container is None or body is None or last is None or last + 1 >= len(body)
            or not hasattr(container, "_insert_at")):
        table[key] = value  # nothing after the last key (or no key yet): appending is the same
        return
    container._insert_at(last + 1, key, value)


def _to_table(data: Mapping[str, Any]) -> Table:
    table = tomlkit.table()
    for key, value in data.items():
        if not isinstance(value, dict):
            table.add(key, value)
    for key, value in data.items():
        if isinstance(value, dict):
            table.add(key, _to_table(value))
    return table


def _inline_text(data: Mapping[str, Any]) -> str:
    parts = [f"{key} = {_inline_text(value) if isinstance(value, dict) else _value(value)}"
             for key, value in data.items()]
    return "{ " + ", ".join(parts) + " }"


def _to_inline(data: Mapping[str, Any]) -> InlineTable:
    """An inline table written the usual way: ``{ key = value, ... }``."""
    item = tomlkit.parse(f"x = {_inline_text(data)}\n")["x"]
    assert isinstance(item, InlineTable)
    return item


def edit_route(path: str | os.PathLike[str], name: str, *, new_name: str | None = None, host: str | None = None,
               port: int | None = _UNSET, auth: HeaderAuth | BasicAuth | None = None,
               secret: SecretRef | None = None, allow_plain_http: bool | None = None,
               methods: tuple[str, ...] | None = _UNSET, paths: tuple[str, ...] | None = _UNSET,
               rate_limit: RateLimit | None = _UNSET, scrub_responses: bool | None = None) -> tuple[Route, Route]:
    """Change only the given fields of route ``name``; returns ``(before, after)``.

    ``methods``, ``paths`` and ``rate_limit`` given as None remove the rule (any method, any path, no limit).
    Keys that keep their value are not touched, so their comments and formatting survive.
    Raises :class:`RouteNotFound`, :class:`RouteExists` (renaming onto a taken name) or :class:`ConfigError`.
    """
    file = Path(os.path.abspath(path))
    before = _current_route(file, name)
    changes: dict[str, Any] = {}
    if new_name is not None:
        changes["name"] = new_name
    if host is not None:
        from cordon_config.hosts import canonical_host

        try:
            changes["host"] = canonical_host(host)
        except ValueError as exc:
            raise ConfigError(file, [ConfigProblem(file, None, f'"{name}"', "match.host", str(exc))]) from None
    if port is not _UNSET:
        changes["port"] = port
    if auth is not None:
        changes["auth"] = auth
    if secret is not None:
        changes["secret"] = secret
    if allow_plain_http is not None:
        changes["allow_plain_http"] = allow_plain_http
    for key, value in (("methods", methods), ("paths", paths), ("rate_limit", rate_limit)):
        if value is not _UNSET:
            changes[key] = value
    if scrub_responses is not None:
        changes["scrub_responses"] = scrub_responses
    after = dataclasses.replace(before, **changes)

    def change(document: TOMLDocument) -> tuple[Route, Route]:
        routes = _routes(document, file)
        index = _index(routes, name, file)
        if new_name is not None and new_name != name:
            for table in routes or []:
                if table.get("name") == new_name:
                    raise RouteExists(f"a route named {new_name!r} already exists in {file}")
        assert routes is not None
        old_data = route_to_dict(before)
        new_data = route_to_dict(after)
        if before.allow_plain_http and not after.allow_plain_http and "allow_plain_http" in routes[index]:
            new_data["allow_plain_http"] = False
        if not before.scrub_responses and after.scrub_responses and "scrub_responses" in routes[index]:
            new_data["scrub_responses"] = True
        _apply(routes[index], old_data, new_data)
        return before, after

    return _edit(file, change)


def _current_route(file: Path, name: str) -> Route:
    from cordon_config.parse import load_config

    config = load_config(file)
    for route in config.routes:
        if route.name == name:
            return route
    raise RouteNotFound(name, file)


def remove_route(path: str | os.PathLike[str], name: str) -> Route:
    """Delete route ``name`` with the comment block just above it; returns the removed route.

    Works on the text: the lines from the route's ``[[routes]]`` header to the next table that is not
    part of it go, except the comments and blank lines that lead into that next table.
    """
    file = Path(os.path.abspath(path))
    removed = _current_route(file, name)

    def change(text: str) -> tuple[str, Route]:
        document = tomlkit.parse(text)
        routes = _routes(document, file)
        index = _index(routes, name, file)
        return _cut_route(text, index), removed

    return _edit_text(file, change)


def _cut_route(text: str, index: int, section: str = "routes") -> str:
    headers: list[tuple[tuple[str | int, ...], int]] = []
    key_lines(text, headers)
    lines = text.splitlines(keepends=True)
    start_line = next(line for path, line in headers if path == (section, index))
    end_line = next((line for path, line in headers if line > start_line and path[:2] != (section, index)),
                    len(lines) + 1)
    start, end = start_line - 1, end_line - 1

    def idle(i: int) -> bool:
        stripped = lines[i].strip()
        return not stripped or stripped.startswith("#")

    while end - 1 > start and idle(end - 1):
        end -= 1
    while start > 0 and lines[start - 1].strip().startswith("#"):
        start -= 1
    kept_blank_after = end >= len(lines) or not lines[end].strip()
    if kept_blank_after:
        while start > 0 and not lines[start - 1].strip():
            start -= 1
    return "".join(lines[:start] + lines[end:])


def set_listen(path: str | os.PathLike[str], port: int) -> Config:
    """Set the top-level ``listen`` port (keeping its comment)."""
    file = Path(os.path.abspath(path))

    def change(document: TOMLDocument) -> None:
        if "listen" in document:
            document["listen"] = port
        else:
            document._insert_at(0, "listen", port)

    return _edit(file, change)


def _set_in(document: TOMLDocument, key_path: tuple[str, ...], value: Any) -> None:
    """Set (or with :data:`UNSET` remove) one plain key, creating its table when missing."""
    *tables, key = key_path
    container: Any = document
    for name in tables:
        if name not in container:
            if value is _UNSET:
                return
            container[name] = tomlkit.table()
        container = container[name]
    if value is _UNSET:
        if key in container:
            del container[key]
    elif key in container:
        container[key] = value
    elif container is document:
        _add_top_level(document, key, value)
    else:
        _add_key(container, key, value)


def _add_top_level(document: TOMLDocument, key: str, value: Any) -> None:
    """A new top-level key goes after the last top-level key (before the first table), as a person would."""
    last = None
    for index, (name, item) in enumerate(document.body):
        if isinstance(item, Table | AoT):
            break
        if name is not None:
            last = index
    if last is None:
        document._insert_at(0, key, value)
    elif last + 1 < len(document.body):
        document._insert_at(last + 1, key, value)
    else:
        document[key] = value


def apply_values(text: str, values: Mapping[tuple[str, ...], Any]) -> str:
    """``text`` with plain keys set (or removed with :data:`UNSET`), everything else kept byte for byte."""
    document = tomlkit.parse(text)
    for key_path, value in values.items():
        _set_in(document, key_path, value)
    return tomlkit.dumps(document)


def set_values(path: str | os.PathLike[str], values: Mapping[tuple[str, ...], Any], *, write: bool = True
               ) -> tuple[str, str]:
    """Set plain keys such as ``("listen",)`` or ``("tls", "upstream_ca_file")`` (``UNSET`` removes one);
    validated first, locked, backed up, atomic. Returns the text before and after (``write=False``: a preview).
    """
    file = Path(os.path.abspath(path))
    texts: list[str] = []

    def change(document: TOMLDocument) -> tuple[str, str]:
        texts.append(tomlkit.dumps(document))
        for key_path, value in values.items():
            _set_in(document, key_path, value)
        texts.append(tomlkit.dumps(document))
        return texts[0], texts[1]

    return _edit(file, change, write=write)


def edit_egress(path: str | os.PathLike[str], *, unrouted: str | None = None, allow: Sequence[str] = (),
                disallow: Sequence[str] = ()) -> tuple[Egress, Egress]:
    """Change ``[egress]``: set ``unrouted``, add ``allow`` entries, remove ``disallow`` entries (compared in
    canonical form); returns ``(before, after)``. Creates the table when missing; an unchanged file is not
    rewritten. Raises ValueError for an invalid entry, :class:`ConfigError` when the result is invalid."""
    from cordon_config.egress import canonical_pattern
    from cordon_config.parse import load_config

    file = Path(os.path.abspath(path))
    unwanted = {canonical_pattern(entry) for entry in disallow}
    wanted = [entry for entry in map(canonical_pattern, allow) if entry not in unwanted]  # removal wins
    before = load_config(file).egress

    def change(document: TOMLDocument) -> None:
        table = document.get("egress")
        if table is None:
            if unrouted in (None, "tunnel") and not wanted:
                return  # nothing to say that the defaults do not say already
            table = tomlkit.table()
            document.add(tomlkit.nl())
            document.add("egress", table)
        if unrouted is not None and table.get("unrouted", "tunnel") != unrouted:
            table["unrouted"] = unrouted
        entries = table.get("allow")
        if entries is None and wanted:
            table["allow"] = tomlkit.array()
            entries = table["allow"]
        if entries is None:
            return
        present = []
        for index in reversed(range(len(entries))):  # edit the array in place: its layout and comments stay
            try:
                canonical = canonical_pattern(str(entries[index]))
            except ValueError:
                continue
            if canonical in unwanted:
                del entries[index]
            else:
                present.append(canonical)
        for entry in wanted:
            if entry not in present:
                entries.append(entry)
                present.append(entry)

    _edit(file, change)
    return before, load_config(file).egress


# -- listeners ----------------------------------------------------------------------------------------------


def listener_to_dict(listener: Listener) -> dict[str, Any]:
    """The cordon.toml table of ``listener`` as plain data (defaults omitted)."""
    secret: dict[str, Any] = {"source": listener.secret.source}
    for key, value in listener.secret.fields.items():
        if listener.secret.source == "keyring" and key == "service" and value == DEFAULT_KEYRING_SERVICE:
            continue
        secret[key] = list(value) if isinstance(value, tuple) else value
    data: dict[str, Any] = {"name": listener.name, "port": listener.port, "upstream": listener.upstream}
    if listener.client_tls != "accept":
        data["client_tls"] = listener.client_tls
    if listener.upstream_tls != "verify-full":
        data["upstream_tls"] = listener.upstream_tls
    data["auth"] = {"type": "password", "username": listener.auth.username, "secret": secret}
    return data


def listener_to_toml(listener: Listener) -> str:
    """``listener`` as a ``[[listeners]]`` block in the layout of the docs (sub-tables, no inline tables)."""
    data = listener_to_dict(listener)
    lines = ["[[listeners]]"]
    lines += [f"{key} = {_value(value)}" for key, value in data.items() if key != "auth"]
    lines.append("[listeners.auth]")
    lines += [f"{key} = {_value(value)}" for key, value in data["auth"].items() if key != "secret"]
    lines.append("[listeners.auth.secret]")
    lines += [f"{key} = {_value(value)}" for key, value in data["auth"]["secret"].items()]
    return "\n".join(lines) + "\n"


def _taken(document: TOMLDocument, file: Path, name: str) -> None:
    for section, kind in (("routes", "route"), ("listeners", "listener")):
        for table in _routes(document, file, section) or []:
            if table.get("name") == name:
                raise ListenerExists(f"a {kind} named {name!r} already exists in {file}")


def add_listener(path: str | os.PathLike[str], listener: Listener) -> Config:
    """Append ``listener`` as a new ``[[listeners]]`` table; returns the validated new config.

    Raises :class:`ListenerExists` when a route or listener has the name, :class:`ConfigError` when the result
    is invalid (a port in use, ...).
    """
    file = Path(os.path.abspath(path))

    def change(document: TOMLDocument) -> None:
        _taken(document, file, listener.name)
        _append(document, "listeners", listener_to_toml(listener), _routes(document, file, "listeners"))

    return _edit(file, change)


def _current_listener(file: Path, name: str) -> Listener:
    from cordon_config.parse import load_config

    found = load_config(file).listener(name)
    if found is None:
        raise ListenerNotFound(name, file)
    return found


def edit_listener(path: str | os.PathLike[str], name: str, *, new_name: str | None = None, port: int | None = None,
                  upstream: str | None = None, client_tls: str | None = None, upstream_tls: str | None = None,
                  username: str | None = None, secret: SecretRef | None = None) -> tuple[Listener, Listener]:
    """Change only the given fields of listener ``name``; returns ``(before, after)``.

    Keys that keep their value are not touched, so their comments and formatting survive. Raises
    :class:`ListenerNotFound`, :class:`ListenerExists` (renaming onto a taken name) or :class:`ConfigError`.
    """
    from cordon_config.parse import parse_upstream

    file = Path(os.path.abspath(path))
    before = _current_listener(file, name)
    changes: dict[str, Any] = {}
    if new_name is not None:
        changes["name"] = new_name
    if port is not None:
        changes["port"] = port
    if upstream is not None:
        try:
            changes["upstream_host"], changes["upstream_port"] = parse_upstream(upstream)
        except ValueError as exc:
            raise ConfigError(file, [ConfigProblem(file, None, f'"{name}"', "upstream", str(exc),
                                                   kind="listener")]) from None
    if client_tls is not None:
        changes["client_tls"] = client_tls
    if upstream_tls is not None:
        changes["upstream_tls"] = upstream_tls
    if username is not None:
        changes["auth"] = PasswordAuth(username)
    if secret is not None:
        changes["secret"] = secret
    after = dataclasses.replace(before, **changes)

    def change(document: TOMLDocument) -> tuple[Listener, Listener]:
        listeners = _routes(document, file, "listeners")
        index = _index(listeners, name, file, ListenerNotFound)
        if new_name is not None and new_name != name:
            _taken(document, file, new_name)
        assert listeners is not None
        old_data, new_data = listener_to_dict(before), listener_to_dict(after)
        table = listeners[index]
        for key in ("client_tls", "upstream_tls"):
            if key in table:  # written out (perhaps as the default): keep it written, changed only if it changes
                old_data[key], new_data[key] = getattr(before, key), getattr(after, key)
        if old_data["upstream"] == new_data["upstream"] and table.get("upstream") != old_data["upstream"]:
            new_data["upstream"] = old_data["upstream"] = table.get("upstream")  # keep the user's spelling
        _apply(table, old_data, new_data)
        return before, after

    return _edit(file, change)


def remove_listener(path: str | os.PathLike[str], name: str) -> Listener:
    """Delete listener ``name`` with the comment block just above it; returns the removed listener."""
    file = Path(os.path.abspath(path))
    removed = _current_listener(file, name)

    def change(text: str) -> tuple[str, Listener]:
        document = tomlkit.parse(text)
        index = _index(_routes(document, file, "listeners"), name, file, ListenerNotFound)
        return _cut_route(text, index, "listeners"), removed

    return _edit_text(file, change)
