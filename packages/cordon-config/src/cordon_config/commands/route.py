"""`cordon route add|edit|list|show|remove`, including the add wizard."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any

from cordon_config.approvals import route_item
from cordon_config.commands.approve import record
from cordon_config.commands.common import (
    FAILED,
    OK,
    RESTART,
    ROUTE_FLAGS,
    UsageError,
    after_routes_changed,
    describe_auth,
    describe_rate_limit,
    describe_secret,
    find_route,
    is_tty,
    load,
    no_config,
    print_json,
    route_json,
    scope_of,
    write_error,
)
from cordon_config.commands.sources import ask, ask_secret, given, secret_from_args
from cordon_config.errors import ConfigError, RouteNotFound
from cordon_config.model import BasicAuth, Config, HeaderAuth, RateLimit, Route
from cordon_config.pathrules import describe_rules
from cordon_config.scope import ScopePaths

_POLICY_FLAGS = ("methods", "paths", "requests_per_minute", "burst", "scrub_responses")
_FIELD_FLAGS = ("host", "port", "auth_type", "header_name", "scheme", "username", "allow_plain_http", "source",
                "account", "service", "decode", "vault", "item", "field", "var", "path", "argv", *_POLICY_FLAGS)


def _auth_from_args(args: argparse.Namespace, base: HeaderAuth | BasicAuth | None) -> HeaderAuth | BasicAuth | None:
    kind = args.auth_type
    if kind is None:
        if args.username is not None and args.header_name is None:
            kind = "basic"
        elif args.header_name is not None or args.scheme is not None:
            kind = "header"
        elif base is not None:
            return None
        else:
            kind = "header"
    if kind == "basic":
        if args.header_name is not None or args.scheme is not None:
            raise UsageError("--header-name and --scheme do not apply to --auth-type basic")
        username = args.username or (base.username if isinstance(base, BasicAuth) else None)
        if not username:
            raise UsageError("--auth-type basic needs --username")
        return BasicAuth(username)
    if args.username is not None:
        raise UsageError("--username applies only to --auth-type basic")
    previous = base if isinstance(base, HeaderAuth) else None
    header = args.header_name or (previous.header_name if previous else None)
    if not header:
        raise UsageError("--header-name is required", "e.g. --header-name Authorization --scheme Bearer")
    if args.scheme is not None:
        scheme: str | None = args.scheme or None
    elif previous is not None and previous.header_name.lower() == header.lower():
        scheme = previous.scheme
    else:
        scheme = None
    if header.lower() == "authorization" and not scheme:
        raise UsageError("--scheme is required when --header-name is Authorization", "add --scheme Bearer")
    return HeaderAuth(header, scheme)


def _list_flag(text: str, flag: str, check: Callable[[str], str | None]) -> tuple[str, ...] | None:
    """A comma-separated ``--methods``/``--paths`` value: None for "" (any), else the checked items."""
    items = tuple(dict.fromkeys(item.strip() for item in text.split(",") if item.strip()))
    if not items:
        return None
    for item in items:
        problem = check(item)
        if problem:
            raise UsageError(f"{flag}: {problem}", 'e.g. --methods POST,GET --paths "/v1/responses,/v1/models*"')
    return items


def _rules_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The policy fields the flags give (only those given): methods, paths, rate_limit, scrub_responses."""
    from cordon_config.pathrules import method_problem, path_rule_problem

    fields: dict[str, Any] = {}
    if args.methods is not None:
        fields["methods"] = _list_flag(args.methods, "--methods", method_problem)
    if args.paths is not None:
        fields["paths"] = _list_flag(args.paths, "--paths", path_rule_problem)
    if args.scrub_responses is not None:
        fields["scrub_responses"] = args.scrub_responses
    return fields


def _rate_limit_from_args(args: argparse.Namespace, base: RateLimit | None) -> tuple[bool, RateLimit | None]:
    """(given, the route's rate limit) from ``--requests-per-minute`` (0: none) and ``--burst``."""
    rate, burst = args.requests_per_minute, args.burst
    if rate is None and burst is None:
        return False, base
    if (rate is not None and rate < 0) or (burst is not None and burst < 1):
        raise UsageError("--requests-per-minute must be 0 or more and --burst 1 or more")
    if rate == 0:
        if burst is not None:
            raise UsageError("--burst needs a rate limit", "give --requests-per-minute N too")
        return True, None
    if rate is None:
        if base is None:
            raise UsageError("--burst needs a rate limit", "give --requests-per-minute N too")
        return True, RateLimit(base.requests_per_minute, burst)
    return True, RateLimit(rate, burst if burst is not None else (base.burst if base else None))


def _route_from_args(args: argparse.Namespace) -> Route:
    from cordon_config.hosts import canonical_host

    missing = [flag for flag, value in (("--name", args.name), ("--host", args.host)) if not value]
    if missing:
        raise UsageError(f"route add needs {' and '.join(missing)}", f"flags: {ROUTE_FLAGS}")
    try:
        host = canonical_host(args.host)
    except ValueError as exc:
        raise UsageError(f"--host: {exc}", "give a DNS name such as api.openai.com (no scheme, port or path)"
                         ) from None
    auth = _auth_from_args(args, None)
    secret = secret_from_args(args, args.name, None)
    assert auth is not None and secret is not None
    _, rate_limit = _rate_limit_from_args(args, None)
    return Route(args.name, host, auth, secret, args.port, bool(args.allow_plain_http), rate_limit=rate_limit,
                 **_rules_from_args(args))


def run_route(args: argparse.Namespace) -> int:
    action = args.action
    if action == "approve":
        from cordon_config.commands.approve import run_approve

        return run_approve(args)
    if action == "add":
        return _route_add(args)
    if action == "edit":
        return _route_edit(args)
    if action == "remove":
        return _route_remove(args)
    paths, config = load(args)
    unapproved = _unapproved_routes(config, paths)
    if action == "list":
        if args.json:
            print_json([{**route_json(route), "approved": route.name not in unapproved} for route in config.routes])
            return OK
        if not config.routes:
            print(f"no routes in {config.path} (add one with `cordon route add`)")
            return OK
        rows = [("NAME", "HOST", "INJECTS", "SECRET")]
        for route in config.routes:
            host = route.host + (f":{route.port}" if route.port else "")
            rows.append((route.name, host, describe_auth(route), describe_secret(route.secret)))
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        for row in rows:
            print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3])
        if unapproved:
            from cordon_config.approvals import approve_command

            names = [route.name for route in config.routes if route.name in unapproved]
            print(f"not approved, so cordon will not use them: {', '.join(names)} "
                  f"(review, then: {approve_command(names, paths.flag)})")
        return OK
    route = find_route(config, args.name)
    if args.json:
        print_json({**route_json(route), "approved": route.name not in unapproved})
        return OK
    print(f"route {route.name}")
    print(f"  host:    {route.host}" + (f" (port {route.port} only)" if route.port else " (any port)"))
    print(f"  injects: {describe_auth(route)}")
    print(f"  secret:  {describe_secret(route.secret)}")
    if route.allow_plain_http:
        print("  plain http:// requests are injected too (allow_plain_http = true)")
    print(f"  allows:  {describe_rules(route.methods, route.paths)}")
    print(f"  limit:   {describe_rate_limit(route)}")
    print("  scrub:   " + ("the key is masked in responses" if route.scrub_responses else
                          "off: a response may carry the key back (scrub_responses = false)"))
    from cordon_config.providers import by_host

    provider = by_host(route.host)
    if route.methods is None and route.paths is None and provider is not None and provider.rule_flags():
        print(f"  suggested rules: cordon route edit {route.name} {provider.rule_flags()}")
    if route.name in unapproved:
        from cordon_config.approvals import approve_command

        print(f"  approval: not approved as written ({unapproved[route.name]}); review, then: "
              f"{approve_command([route.name], paths.flag)}")
    print(f"  config:  {config.path}")
    return OK


def _unapproved_routes(config: Config, paths: ScopePaths) -> dict[str, str]:
    """Route name -> why it is not approved (``new``, ``changed``, ...), for the routes that are not."""
    from cordon_config.approvals import check_approved

    return {entry.item.name: entry.reason for entry in check_approved(config, paths) if entry.item.kind == "route"}


def _route_add(args: argparse.Namespace) -> int:
    from cordon_config.edit import RouteExists, add_route

    paths = scope_of(args, changes=True)
    wizard = not given(args, "name", *_FIELD_FLAGS)
    if wizard and not is_tty(sys.stdin):
        raise UsageError(f"route add needs flags when stdin is not a terminal: {ROUTE_FLAGS}")
    if not paths.config_path.exists():
        raise no_config(paths)
    route = _wizard(paths) if wizard else _route_from_args(args)
    try:
        config = add_route(paths.config_path, route)
    except RouteExists as exc:
        raise UsageError(str(exc), f"change it with `cordon route edit {route.name} ...`") from None
    except ConfigError as exc:
        raise write_error(exc) from None
    record(paths, config, None, route_item(find_route(config, route.name)))
    print(f"added route {route.name}: {route.host} gets {describe_auth(route)} "
          f"from {describe_secret(route.secret)}")
    print(f"  in {paths.config_path}")
    if route.secret.source == "keyring":
        stored = False
        if wizard and input("store the secret in the keyring now? [Y/n] ").strip().lower() in ("", "y", "yes"):
            from cordon_config.commands.secret import store_secret

            stored = store_secret(route) == OK
        if not stored:
            print(f"next: store the secret with `cordon secret set {route.name}{paths.flag}`")
    status = after_routes_changed(paths)
    warn_bypass(route.host)
    print(RESTART)
    return status


def warn_bypass(host: str) -> None:
    """Warn when this shell's NO_PROXY would send clients started from it straight to a routed host."""
    from cordon_config.noproxy import bypassing

    for name, value, _ in bypassing(os.environ, [host])[:1]:
        sys.stderr.write(f"cordon: warning: {name}={value} in this shell sends requests for {host} around cordon "
                         "(the route never sees them)\n")
        sys.stderr.write(f'hint: eval "$(cordon env)" again (its NO_PROXY leaves routed hosts out), or remove '
                         f"{host} from {name}\n")


def _route_edit(args: argparse.Namespace) -> int:
    from cordon_config.edit import RouteExists, edit_route

    paths, config = load(args, changes=True)
    before = find_route(config, args.name)
    if not given(args, "new_name", *_FIELD_FLAGS):
        raise UsageError("nothing to change: give the fields to change", f"flags: {ROUTE_FLAGS}")
    auth = _auth_from_args(args, before.auth)
    secret = secret_from_args(args, args.new_name or before.name, before.secret)
    policy = _rules_from_args(args)
    limit_given, rate_limit = _rate_limit_from_args(args, before.rate_limit)
    if limit_given:
        policy["rate_limit"] = rate_limit
    try:
        before, after = edit_route(paths.config_path, args.name, new_name=args.new_name, host=args.host,
                                   **({"port": args.port or None} if args.port is not None else {}), auth=auth,
                                   secret=secret, allow_plain_http=args.allow_plain_http, **policy)
    except RouteExists as exc:
        raise UsageError(str(exc)) from None
    except RouteNotFound as exc:
        raise UsageError(str(exc)) from None
    except ConfigError as exc:
        raise write_error(exc) from None
    changes = _route_changes(before, after)
    if changes:
        record(paths, config, route_item(before), route_item(after))
    print(f"changed route {before.name}:" if changes else f"route {before.name}: nothing changed")
    for line in changes:
        print(f"  {line}")
    status = OK
    if changes:
        status = after_routes_changed(paths)
        print(RESTART)
    return status


def _route_changes(before: Route, after: Route) -> list[str]:
    pairs = [
        ("name", before.name, after.name),
        ("host", before.host, after.host),
        ("port", before.port or "any", after.port or "any"),
        ("injects", describe_auth(before), describe_auth(after)),
        ("secret", describe_secret(before.secret), describe_secret(after.secret)),
        ("plain http", before.allow_plain_http, after.allow_plain_http),
        ("allows", describe_rules(before.methods, before.paths), describe_rules(after.methods, after.paths)),
        ("rate limit", describe_rate_limit(before), describe_rate_limit(after)),
        ("scrub responses", "on" if before.scrub_responses else "off", "on" if after.scrub_responses else "off"),
    ]
    return [f"{label}: {old} -> {new}" for label, old, new in pairs if old != new]


def _route_remove(args: argparse.Namespace) -> int:
    from cordon_config.edit import remove_route

    paths, config = load(args, changes=True)
    route = find_route(config, args.name)
    if not args.yes:
        if not is_tty(sys.stdin):
            raise UsageError(f"refusing to remove route {route.name} without confirmation", "pass --yes")
        answer = input(f"remove route {route.name} ({route.host}) from {paths.config_path}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing removed")
            return FAILED
    try:
        removed = remove_route(paths.config_path, route.name)
    except ConfigError as exc:
        raise write_error(exc) from None
    record(paths, config, route_item(removed), None)
    print(f"removed route {route.name} ({route.host}) from {paths.config_path}")
    if route.secret.source == "keyring":
        delete = args.delete_secret if args.delete_secret is not None else (False if args.yes else None)
        _after_keyring_route_removed(route, config, paths, delete=delete)
    status = after_routes_changed(paths)
    print(RESTART)
    return status


def _after_keyring_route_removed(route: Route, config: Config, paths: ScopePaths, *, delete: bool | None) -> None:
    """Say what became of the removed route's keyring entry, and delete it when asked (``--delete-secret``, or
    yes at the prompt): only when one is stored and no other route reads the same entry."""
    from cordon_config.commands.secret import delete_keyring_entry, keyring_entry_exists

    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    entry = f"service {service}, account {account}"
    sharing = [other.name for other in config.routes if other.name != route.name
               and other.secret.source == "keyring" and other.secret.fields.get("service", "cordon") == service
               and other.secret.fields["account"] == account]
    if sharing:
        print(f"its keyring secret ({entry}) is kept: route {sharing[0]} uses it too")
        return
    stored = keyring_entry_exists(service, account)
    if stored is False:
        print(f"no secret was stored for it in the keyring ({entry})")
        return
    if delete is None and stored and is_tty(sys.stdin):
        delete = input(f"also delete its secret from the keyring ({entry})? [y/N] ").strip().lower() in ("y", "yes")
    if delete and stored:
        delete_keyring_entry(service, account)
        print(f"deleted its secret from the keyring ({entry})")
        return
    command = f"cordon secret delete --account {shlex.quote(account)}"
    if service != "cordon":
        command += f" --service {shlex.quote(service)}"
    known = "its secret is kept in the keyring" if stored else "if you stored its secret in the keyring, it is kept"
    print(f"{known} ({entry}); delete it with: {command}")


def _wizard(paths: ScopePaths) -> Route:
    from cordon_config.hosts import canonical_host
    from cordon_config.parse import NAME_RE, TOKEN_RE, suggest_name

    def host_problem(value: str) -> str | None:
        try:
            canonical_host(value)
        except ValueError as exc:
            return str(exc)
        return None

    print(f"adding a route to {paths.config_path} (Ctrl-C to stop)")
    host = canonical_host(ask("API host (e.g. api.openai.com)", check=host_problem))
    labels = host.split(".")
    guess = suggest_name(labels[-2] if len(labels) >= 2 else host)
    name = ask("route name", guess, lambda v: None if NAME_RE.fullmatch(v) else
                "use lower-case letters, digits, '.', '_' and '-'")
    kind = ask("auth type (header or basic)", "header",
                lambda v: None if v in ("header", "basic") else "type header or basic")
    auth: HeaderAuth | BasicAuth
    if kind == "basic":
        auth = BasicAuth(ask("user name (the secret is the password)",
                              check=lambda v: "no ':' allowed" if ":" in v else None))
    else:
        header = ask("header name", "Authorization",
                      lambda v: None if TOKEN_RE.fullmatch(v) else "not a valid header name")
        default_scheme = "Bearer" if header.lower() == "authorization" else None
        scheme = input(f"scheme (e.g. Bearer; empty for none){f' [{default_scheme}]' if default_scheme else ''}: "
                       ).strip() or default_scheme
        if header.lower() == "authorization" and not scheme:
            scheme = "Bearer"
        auth = HeaderAuth(header, scheme)
    secret = ask_secret(name, "_KEY")
    methods, path_rules, rate_limit = _wizard_policy(host)
    return Route(name, host, auth, secret, methods=methods, paths=path_rules, rate_limit=rate_limit)


def _wizard_policy(host: str) -> tuple[tuple[str, ...] | None, tuple[str, ...] | None, RateLimit | None]:
    """Least privilege: the methods and paths the route allows (a known provider's suggestion as the
    default) and its rate limit."""
    from cordon_config.pathrules import method_problem, path_rule_problem
    from cordon_config.providers import by_host

    provider = by_host(host)
    print('least privilege: which requests may use this key ("any" allows everything)')

    def items(text: str, check: Callable[[str], str | None]) -> tuple[str, ...] | None:
        if text.strip().lower() == "any":
            return None
        return _list_flag(text, "value", check)

    def problem(check: Callable[[str], str | None]) -> Callable[[str], str | None]:
        def run(text: str) -> str | None:
            try:
                items(text, check)
            except UsageError as exc:
                return str(exc).removeprefix("value: ")
            return None
        return run

    methods_default = ",".join(provider.methods) if provider and provider.methods else "any"
    paths_default = ",".join(provider.paths) if provider and provider.paths else "any"
    methods = items(ask("allowed methods, comma-separated", methods_default, problem(method_problem)),
                    method_problem)
    paths = items(ask('allowed paths, comma-separated (exact, or a prefix ending in "*")', paths_default,
                       problem(path_rule_problem)), path_rule_problem)
    rate = ask("requests per minute (a number, or none)", "none",
                lambda v: None if v == "none" or (v.isdigit() and int(v) > 0) else "a positive number, or none")
    return methods, paths, (None if rate == "none" else RateLimit(int(rate)))


