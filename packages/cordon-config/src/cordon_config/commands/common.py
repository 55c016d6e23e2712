"""What every cordon-config command shares: errors, exit codes, scope and config loading, descriptions."""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any, TextIO

from cordon_config.errors import ConfigError
from cordon_config.model import BasicAuth, Config, Listener, Route, SecretRef, SecretSourceName
from cordon_config.scope import (
    ScopeError,
    ScopePaths,
    missing_config,
    scope_from_args,
    using_line,
    with_scope_flag,
)

OK, FAILED, USAGE, INTERRUPTED = 0, 1, 2, 130
RESTART = "restart the proxy (cordon start) for the change to take effect"
TOKEN_RELOAD = "a running proxy re-reads tokens.toml by itself (within a second)"
SOURCES: tuple[SecretSourceName, ...] = ("keyring", "1password", "env", "file", "command")
ROUTE_FLAGS = "--name --host --auth-type --header-name --scheme --username --source --account --service " \
              "--vault --item --field --var --path --argv --methods --paths --requests-per-minute --burst --scrub"


class UsageError(Exception):
    """Bad input: printed as one ``cordon: ...`` line (plus an optional hint), exit 2."""

    def __init__(self, message: str, hint: str | None = None, code: int = USAGE):
        super().__init__(message)
        self.hint = hint
        self.code = code


class Failure(UsageError):
    """The command could not do its job (exit 1)."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message, hint, FAILED)


def is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def colour(text: str, code: str, stream: TextIO) -> str:
    if os.environ.get("NO_COLOR") or not is_tty(stream):
        return text
    return f"\033[{code}m{text}\033[0m"


# -- shared helpers -------------------------------------------------------------------------------------------


def scope_of(args: argparse.Namespace, *, changes: bool = False) -> ScopePaths:
    """The scope the arguments select; a command that ``changes`` something names a cordon.toml found in a
    parent directory on stderr (``cordon: using …``)."""
    try:
        paths = scope_from_args(args)
    except ScopeError as exc:
        raise UsageError(str(exc)) from None
    line = using_line(paths) if changes else None
    if line:
        sys.stderr.write(line + "\n")
    return paths


def config_failure(exc: ConfigError) -> Failure:
    return Failure(str(exc))


def write_error(exc: ConfigError) -> UsageError:
    """A config the command would produce is invalid: one line (the first problem) and its hint."""
    problem = exc.problems[0]
    where = f"{problem.kind} {problem.route}: " if problem.route else ""
    key = f"{problem.key}: " if problem.key else ""
    return UsageError(f"{where}{key}{problem.message}", problem.hint)


def no_config(paths: ScopePaths) -> Failure:
    """The one "no cordon.toml" failure (exit 1) of every command."""
    return Failure(*missing_config(paths))


def load(args: argparse.Namespace, *, changes: bool = False) -> tuple[ScopePaths, Config]:
    from cordon_config.errors import ConfigNotFound
    from cordon_config.parse import load_config

    paths = scope_of(args, changes=changes)
    try:
        return paths, load_config(paths.config_path)
    except ConfigNotFound:
        raise no_config(paths) from None
    except ConfigError as exc:
        raise config_failure(exc) from None


def find_route(config: Config, name: str) -> Route:
    for route in config.routes:
        if route.name == name:
            return route
    names = ", ".join(route.name for route in config.routes) or "none"
    raise UsageError(f"no route named {name!r} in {config.path}", f"routes: {names}")


def find_listener(config: Config, name: str) -> Listener:
    found = config.listener(name)
    if found is not None:
        return found
    names = ", ".join(item.name for item in config.listeners) or "none"
    hint = f"listeners: {names}"
    if any(route.name == name for route in config.routes):
        hint = f"{name} is a route: see `cordon route show {name}`"
    raise UsageError(f"no listener named {name!r} in {config.path}", hint)


def find_secret_owner(config: Config, name: str) -> Route | Listener:
    """The route or listener called ``name`` (they share one name space)."""
    owners: tuple[Route | Listener, ...] = (*config.routes, *config.listeners)
    for item in owners:
        if item.name == name:
            return item
    names = ", ".join(item.name for item in owners) or "none"
    raise UsageError(f"no route or listener named {name!r} in {config.path}", f"names: {names}")


def listener_json(listener: Listener) -> dict[str, Any]:
    """A listener as JSON-ready data (references to secrets only)."""
    fields = {key: list(value) if isinstance(value, tuple) else value
              for key, value in listener.secret.fields.items()}
    return {"name": listener.name, "address": "127.0.0.1", "port": listener.port, "upstream": listener.upstream,
            "upstream_host": listener.upstream_host, "upstream_port": listener.upstream_port,
            "client_tls": listener.client_tls, "upstream_tls": listener.upstream_tls,
            "auth": {"type": "password", "username": listener.auth.username},
            "secret": {"source": listener.secret.source, **fields}}


def describe_secret(ref: SecretRef) -> str:
    """A one-line description of where a secret lives (never the value)."""
    fields = ref.fields
    if ref.source == "keyring":
        text = f"keyring {fields.get('service', 'cordon')}/{fields['account']}"
        return text + (" (go-keyring)" if fields.get("decode") else "")
    if ref.source == "1password":
        from cordon_config.secrets import op_reference

        return f"1password {op_reference(fields)}" + (f" --account {fields['account']}" if "account" in fields else "")
    if ref.source == "env":
        return f"env ${fields['var']}"
    if ref.source == "file":
        return f"file {fields['path']}"
    return "command " + shlex.join(fields["argv"])


def describe_auth(route: Route) -> str:
    """``Authorization: Bearer <secret>`` or ``Authorization: Basic base64(user:<secret>)``."""
    if isinstance(route.auth, BasicAuth):
        return f"Authorization: Basic base64({route.auth.username}:<secret>)"
    scheme = f"{route.auth.scheme} " if route.auth.scheme else ""
    return f"{route.auth.header_name}: {scheme}<secret>"


def describe_rate_limit(route: Route) -> str:
    """``120 requests per minute (bursts of 20)`` or ``none``."""
    limit = route.rate_limit
    if limit is None:
        return "none"
    burst = f" (bursts of {limit.burst})" if limit.burst is not None else ""
    return f"{limit.requests_per_minute} requests per minute{burst}"


def route_json(route: Route) -> dict[str, Any]:
    """A route as JSON-ready data (references to secrets only)."""
    auth: dict[str, Any] = ({"type": "basic", "username": route.auth.username} if isinstance(route.auth, BasicAuth)
                            else {"type": "header", "header_name": route.auth.header_name,
                                  "scheme": route.auth.scheme})
    fields = {key: list(value) if isinstance(value, tuple) else value for key, value in route.secret.fields.items()}
    return {"name": route.name, "host": route.host, "port": route.port, "auth": auth,
            "secret": {"source": route.secret.source, **fields}, "allow_plain_http": route.allow_plain_http,
            "methods": list(route.methods) if route.methods is not None else None,
            "paths": list(route.paths) if route.paths is not None else None,
            "rate_limit": ({"requests_per_minute": route.rate_limit.requests_per_minute,
                            "burst": route.rate_limit.capacity} if route.rate_limit is not None else None),
            "scrub_responses": route.scrub_responses}


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2) + "\n")


def entry_point_hooks(group: str) -> list[Any]:
    """The callables of an entry-point group (how cordon-config calls into tools it must not import)."""
    from importlib.metadata import entry_points

    hooks = []
    for entry in entry_points(group=group):
        try:
            hooks.append(entry.load())
        except Exception as exc:  # a broken plugin must not stop the command
            sys.stderr.write(f"cordon: warning: cannot load {entry.value}: {exc}\n")
    return hooks


def after_routes_changed(paths: ScopePaths) -> int:
    """Run the ``cordon.routes_changed`` hooks (cordon-ca re-issues the name-constrained CA) with the new config
    as approved (routes that are not approved get no say in what the CA permits, nor do [tls] settings that are
    not: then nothing runs); print their lines; FAILED when one failed (the route change is already written)."""
    hooks = entry_point_hooks("cordon.routes_changed")
    if not hooks:
        return OK
    import dataclasses

    from cordon_config.approvals import check_approved
    from cordon_config.parse import load_config

    config = load_config(paths.config_path)
    pending = check_approved(config, paths)
    if any(entry.item.kind == "settings" for entry in pending):  # [egress]/[audit] do not concern the CA
        return OK  # the [tls] settings are not approved: the CA stays as it is (cordon start refuses them)
    unapproved = {(entry.item.kind, entry.item.name) for entry in pending}
    config = dataclasses.replace(
        config, routes=tuple(r for r in config.routes if ("route", r.name) not in unapproved),
        listeners=tuple(item for item in config.listeners if ("listener", item.name) not in unapproved))
    failed = run_hooks(hooks, (paths, config),
                       failure="could not update what depends on cordon.toml",
                       hint=with_scope_flag("run `cordon setup` (it re-issues the CA for the routes and "
                                            "rewrites the integration files)", paths),
                       paths=paths)
    return FAILED if failed else OK


def run_hooks(hooks: list[Any], args: tuple[Any, ...], *, failure: str, hint: str,
              paths: ScopePaths | None = None) -> bool:
    """Call each hook with ``args`` and print the lines it returns, indented; a hook that raises gets
    ``cordon: FAILURE: reason`` and the hint on stderr (one line each; the hook's own hint, scoped to
    ``paths``, when it has one). True when one failed."""
    failed = False
    for hook in hooks:
        try:
            for line in hook(*args) or ():
                print(f"  {line}")
        except Exception as exc:
            sys.stderr.write(f"cordon: {failure}: {' '.join(str(exc).split())[:200]}\n")
            own = getattr(exc, "hint", None)  # e.g. cordon-ca's "chmod 600 …": what actually fixes it
            if isinstance(own, str) and own and paths is not None:
                own = with_scope_flag(own, paths)
            sys.stderr.write(f"hint: {own if isinstance(own, str) and own else hint}\n")
            failed = True
    return failed

