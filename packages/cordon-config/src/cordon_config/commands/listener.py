"""`cordon listener add|edit|list|show|remove`: PostgreSQL credential listeners, including the add wizard."""

from __future__ import annotations

import argparse
import sys

from cordon_config.approvals import listener_item
from cordon_config.commands.approve import record
from cordon_config.commands.common import (
    FAILED,
    OK,
    RESTART,
    UsageError,
    after_routes_changed,
    describe_secret,
    find_listener,
    is_tty,
    listener_json,
    load,
    no_config,
    print_json,
    scope_of,
    write_error,
)
from cordon_config.commands.sources import SOURCE_FLAGS, ask, ask_choice, ask_secret, given, secret_from_args
from cordon_config.errors import ConfigError, ListenerNotFound
from cordon_config.model import Config, Listener, PasswordAuth
from cordon_config.scope import ScopePaths

LISTENER_FLAGS = ("--name --port --upstream --client-tls --upstream-tls --username --source --account --service "
                  "--vault --item --field --var --path --argv")
_FIELD_FLAGS = ("port", "upstream", "client_tls", "upstream_tls", "username", *SOURCE_FLAGS)


def add_listener_fields(parser: argparse.ArgumentParser, *, edit: bool) -> None:
    """The listener flags of ``add`` and ``edit``."""
    from cordon_config.commands.sources import add_source_arguments
    from cordon_config.parse import CLIENT_TLS_MODES, UPSTREAM_TLS_MODES

    group = parser.add_argument_group("listener")
    if edit:
        group.add_argument("--name", dest="new_name", metavar="NEW", help="rename the listener")
    else:
        group.add_argument("--name", help="listener name: lower-case letters, digits, '.', '_', '-'")
    group.add_argument("--port", type=int, help="port on 127.0.0.1 that clients connect to, e.g. 15432")
    group.add_argument("--upstream", metavar="HOST[:PORT]", help="the real PostgreSQL server (port 5432 by default)")
    group.add_argument("--client-tls", choices=CLIENT_TLS_MODES,
                       help="TLS towards clients: accept (default), require or disable")
    group.add_argument("--upstream-tls", choices=UPSTREAM_TLS_MODES,
                       help="TLS towards the server: verify-full (default) or disable (plain TCP, an explicit opt-out)")
    group.add_argument("--username", metavar="USER", help="database user cordon logs in as (clients must use it too)")
    add_source_arguments(parser, "listener")


def run_listener(args: argparse.Namespace) -> int:
    action = args.action
    if action == "approve":
        from cordon_config.commands.approve import run_approve

        return run_approve(args, "listener")
    if action == "add":
        return _add(args)
    if action == "edit":
        return _edit(args)
    if action == "remove":
        return _remove(args)
    paths, config = load(args)
    unapproved = _unapproved(config, paths)
    if action == "list":
        return _list(config, paths, args.json, unapproved)
    listener = find_listener(config, args.name)
    if args.json:
        print_json({**listener_json(listener), "approved": listener.name not in unapproved})
        return OK
    print(f"listener {listener.name}")
    print(f"  listens:  127.0.0.1:{listener.port} (client TLS: {listener.client_tls})")
    tls = "verified TLS (verify-full)" if listener.upstream_tls == "verify-full" else "plain TCP (upstream_tls = disable)"
    print(f"  upstream: {listener.upstream} over {tls}")
    print(f"  logs in:  as {listener.auth.username} with the password from {describe_secret(listener.secret)}")
    print(f'  connect:  psql "host=127.0.0.1 port={listener.port} user={listener.auth.username} dbname=<database>"')
    if listener.name in unapproved:
        from cordon_config.approvals import approve_command

        print(f"  approval: not approved as written ({unapproved[listener.name]}); review, then: "
              f"{approve_command([listener.name], paths.flag, 'listener')}")
    print(f"  config:   {config.path}")
    return OK


def _unapproved(config: Config, paths: ScopePaths) -> dict[str, str]:
    """Listener name -> why it is not approved (``new``, ``changed``, ...), for the listeners that are not."""
    from cordon_config.approvals import check_approved

    return {entry.item.name: entry.reason for entry in check_approved(config, paths)
            if entry.item.kind == "listener"}


def _list(config: Config, paths: ScopePaths, as_json: bool, unapproved: dict[str, str]) -> int:
    if as_json:
        print_json([{**listener_json(listener), "approved": listener.name not in unapproved}
                    for listener in config.listeners])
        return OK
    if not config.listeners:
        print(f"no listeners in {config.path} (add one with `cordon listener add`)")
        return OK
    rows = [("NAME", "LISTENS", "UPSTREAM", "USER", "TLS CLIENT/UPSTREAM", "SECRET")]
    for item in config.listeners:
        rows.append((item.name, f"127.0.0.1:{item.port}", item.upstream, item.auth.username,
                     f"{item.client_tls}/{item.upstream_tls}", describe_secret(item.secret)))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:5])) + "  " + row[5])
    if unapproved:
        from cordon_config.approvals import approve_command

        names = [item.name for item in config.listeners if item.name in unapproved]
        print(f"not approved, so cordon will not use them: {', '.join(names)} "
              f"(review, then: {approve_command(names, paths.flag, 'listener')})")
    return OK


def _listener_from_args(args: argparse.Namespace) -> Listener:
    from cordon_config.parse import parse_upstream

    missing = [flag for flag, value in (("--name", args.name), ("--port", args.port), ("--upstream", args.upstream),
                                        ("--username", args.username)) if not value]
    if missing:
        raise UsageError(f"listener add needs {', '.join(missing)}", f"flags: {LISTENER_FLAGS}")
    try:
        host, port = parse_upstream(args.upstream)
    except ValueError as exc:
        raise UsageError(f"--upstream: {exc}", "e.g. --upstream db.example.com:5432") from None
    secret = secret_from_args(args, args.name, None)
    assert secret is not None
    return Listener(args.name, args.port, host, port, PasswordAuth(args.username), secret,
                    args.client_tls or "accept", args.upstream_tls or "verify-full")


def _add(args: argparse.Namespace) -> int:
    from cordon_config.edit import ListenerExists, add_listener

    paths = scope_of(args, changes=True)
    wizard = not given(args, "name", *_FIELD_FLAGS)
    if wizard and not is_tty(sys.stdin):
        raise UsageError(f"listener add needs flags when stdin is not a terminal: {LISTENER_FLAGS}")
    if not paths.config_path.exists():
        raise no_config(paths)
    listener = _wizard(paths) if wizard else _listener_from_args(args)
    try:
        config = add_listener(paths.config_path, listener)
    except ListenerExists as exc:
        raise UsageError(str(exc), f"change it with `cordon listener edit {listener.name} ...`") from None
    except ConfigError as exc:
        raise write_error(exc) from None
    record(paths, config, None, listener_item(find_listener(config, listener.name)))
    print(f"added listener {listener.name}: 127.0.0.1:{listener.port} logs in to {listener.upstream} as "
          f"{listener.auth.username} with the password from {describe_secret(listener.secret)}")
    print(f"  in {paths.config_path}")
    if listener.upstream_tls == "disable":
        print("  warning: upstream_tls = disable: the connection to the server is plain TCP")
    if listener.secret.source == "keyring":
        stored = False
        if wizard and input("store the password in the keyring now? [Y/n] ").strip().lower() in ("", "y", "yes"):
            from cordon_config.commands.secret import store_secret

            stored = store_secret(listener) == OK
        if not stored:
            print(f"next: store the password with `cordon secret set {listener.name}{paths.flag}`")
    status = after_routes_changed(paths)
    print(RESTART)
    return status


def _edit(args: argparse.Namespace) -> int:
    from cordon_config.edit import ListenerExists, edit_listener

    paths, config = load(args, changes=True)
    before = find_listener(config, args.name)
    if not given(args, "new_name", *_FIELD_FLAGS):
        raise UsageError("nothing to change: give the fields to change", f"flags: {LISTENER_FLAGS}")
    secret = secret_from_args(args, args.new_name or before.name, before.secret)
    try:
        before, after = edit_listener(paths.config_path, args.name, new_name=args.new_name, port=args.port,
                                      upstream=args.upstream, client_tls=args.client_tls,
                                      upstream_tls=args.upstream_tls, username=args.username, secret=secret)
    except (ListenerExists, ListenerNotFound) as exc:
        raise UsageError(str(exc)) from None
    except ConfigError as exc:
        raise write_error(exc) from None
    changes = _changes(before, after)
    if changes:
        record(paths, config, listener_item(before), listener_item(after))
    print(f"changed listener {before.name}:" if changes else f"listener {before.name}: nothing changed")
    for line in changes:
        print(f"  {line}")
    status = OK
    if changes:
        status = after_routes_changed(paths)
        print(RESTART)
    return status


def _changes(before: Listener, after: Listener) -> list[str]:
    pairs = [
        ("name", before.name, after.name),
        ("port", before.port, after.port),
        ("upstream", before.upstream, after.upstream),
        ("client tls", before.client_tls, after.client_tls),
        ("upstream tls", before.upstream_tls, after.upstream_tls),
        ("user", before.auth.username, after.auth.username),
        ("secret", describe_secret(before.secret), describe_secret(after.secret)),
    ]
    return [f"{label}: {old} -> {new}" for label, old, new in pairs if old != new]


def _remove(args: argparse.Namespace) -> int:
    from cordon_config.edit import remove_listener

    paths, config = load(args, changes=True)
    listener = find_listener(config, args.name)
    if not args.yes:
        if not is_tty(sys.stdin):
            raise UsageError(f"refusing to remove listener {listener.name} without confirmation", "pass --yes")
        answer = input(f"remove listener {listener.name} (127.0.0.1:{listener.port} -> {listener.upstream}) from "
                       f"{paths.config_path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return FAILED
    try:
        removed = remove_listener(paths.config_path, listener.name)
    except ConfigError as exc:
        raise write_error(exc) from None
    record(paths, config, listener_item(removed), None)
    print(f"removed listener {listener.name} (127.0.0.1:{listener.port} -> {listener.upstream}) from "
          f"{paths.config_path}")
    if listener.secret.source == "keyring":
        print(f"its keyring secret is kept; delete it with `cordon secret delete {listener.name}` before removing, "
              "or with your keyring tool")
    status = after_routes_changed(paths)
    print(RESTART)
    return status


def _wizard(paths: ScopePaths) -> Listener:
    from cordon_config.parse import (
        CLIENT_TLS_MODES,
        NAME_RE,
        UPSTREAM_TLS_MODES,
        parse_upstream,
        suggest_name,
    )
    from cordon_config.ports import free_port

    def upstream_problem(value: str) -> str | None:
        try:
            parse_upstream(value)
        except ValueError as exc:
            return str(exc)
        return None

    def port_problem(value: str) -> str | None:
        return None if value.isdigit() and 1 <= int(value) <= 65535 else "a port from 1 to 65535"

    print(f"adding a PostgreSQL listener to {paths.config_path} (Ctrl-C to stop)")
    upstream = ask("PostgreSQL server (host[:port], e.g. db.example.com:5432)", check=upstream_problem)
    host, _ = parse_upstream(upstream)
    first = host.split(".")[0]
    guess = suggest_name(first if "db" in first else f"{first}-db")
    name = ask("listener name", guess, lambda v: None if NAME_RE.fullmatch(v) else
               "use lower-case letters, digits, '.', '_' and '-'")
    port = int(ask("local port (127.0.0.1)", str(free_port(15432)), port_problem))
    username = ask("database user cordon logs in as")
    client_tls = ask_choice("TLS towards clients", CLIENT_TLS_MODES, "accept")
    upstream_tls = ask_choice("TLS towards the server", UPSTREAM_TLS_MODES, "verify-full")
    secret = ask_secret(name, "_PASSWORD")
    return Listener(name, port, host, parse_upstream(upstream)[1], PasswordAuth(username), secret,
                    client_tls, upstream_tls)
