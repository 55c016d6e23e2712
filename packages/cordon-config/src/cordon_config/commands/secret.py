"""`cordon secret set|delete|check`: keyring storage and secret checks for routes and listeners (values never
printed)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from cordon_config.commands.common import (
    FAILED,
    OK,
    Failure,
    UsageError,
    colour,
    describe_secret,
    find_secret_owner,
    is_tty,
    load,
    print_json,
)
from cordon_config.model import Config, Listener, Route
from cordon_config.scope import ScopePaths


def _keyring_route(args: argparse.Namespace) -> tuple[Config, Route | Listener]:
    from cordon_config.secrets import kind_of

    paths, config = load(args, changes=True)
    route = find_secret_owner(config, args.name)
    kind = kind_of(route)
    if route.secret.source != "keyring":
        raise UsageError(f"{kind} {route.name} reads its secret from {describe_secret(route.secret)}; "
                         f"`cordon secret {args.action}` manages keyring secrets only",
                         f"store it in that source, or switch: cordon {kind} edit {route.name} --source keyring")
    if args.action == "set" and (kind, route.name) in _unapproved(config, paths):
        from cordon_config.approvals import approve_command

        raise Failure(f"{kind} {route.name} is not approved as {config.path} says, so no secret is stored for it",
                      f"review it (cordon {kind} show {route.name}), then: "
                      f"{approve_command([route.name], paths.flag, kind)}")
    return config, route


def _unapproved(config: Config, paths: ScopePaths) -> set[tuple[str, str]]:
    """(kind, name) of the routes and listeners that are not approved as written (their secrets are neither
    stored nor fetched)."""
    from cordon_config.approvals import check_approved

    return {(entry.item.kind, entry.item.name) for entry in check_approved(config, paths)
            if entry.item.kind in ("route", "listener")}


def _keyring_failure(exc: Exception, what: str) -> Failure:
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        return Failure(f"cannot {what}: no keyring backend is available here",
                       'run `cordon doctor`; on a headless machine use --source env, file or command')
    return Failure(f"cannot {what}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def _read_secret(route: Route | Listener) -> str:
    if is_tty(sys.stdin):
        import getpass

        from cordon_config.secrets import kind_of

        what = "password for listener" if kind_of(route) == "listener" else "secret for route"
        value = getpass.getpass(f"{what} {route.name} (input hidden): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    return value


def store_secret(route: Route | Listener) -> int:
    """Read the secret (no echo on a terminal, else stdin), validate it and store it in the keyring."""
    store_value(route, _read_secret(route))
    return OK


def store_value(route: Route | Listener, value: str) -> None:
    """Validate ``value`` (a header value for a route, a password for a listener) and store it as the keyring
    secret of ``route`` (never printed); :class:`UsageError` / :class:`Failure` with one line otherwise."""
    import keyring

    from cordon_config.secrets import kind_of, value_problem

    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    problem = value_problem(route, value)
    if problem is not None:
        raise UsageError(f"secret not stored: {problem}")
    try:
        keyring.set_password(service, account, value)
    except Exception as exc:  # KeyringError, NoKeyringError, backend-specific (D-Bus) errors
        raise _keyring_failure(exc, "store the secret") from None
    print(f"stored the secret for {kind_of(route)} {route.name} in the keyring (service {service}, account {account})")
    print("a running proxy picks it up within secret_ttl seconds; `cordon secret check` verifies it")


def keyring_entry_exists(service: str, account: str) -> bool | None:
    """Whether the keyring holds an entry (None: the keyring cannot be asked here)."""
    try:
        import keyring

        return keyring.get_password(service, account) is not None
    except Exception:  # no backend, locked, D-Bus errors: unknown
        return None


def delete_keyring_entry(service: str, account: str) -> None:
    """Delete one keyring entry; :class:`Failure` when there is none or the keyring refuses."""
    import keyring
    from keyring.errors import PasswordDeleteError

    try:
        keyring.delete_password(service, account)
    except PasswordDeleteError:
        raise Failure(f"no secret stored in the keyring for service {service}, account {account}") from None
    except Exception as exc:  # KeyringError, NoKeyringError, backend-specific (D-Bus) errors
        raise _keyring_failure(exc, "delete the secret") from None


def run_secret(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _secret_check(args)
    if args.action == "delete" and (args.name is None) == (args.account is None):
        raise UsageError("give a route NAME or --account (for an entry no route uses any more), not both",
                         "e.g. cordon secret delete openai")
    if args.action == "delete" and args.account is not None:
        service = args.service or "cordon"
        delete_keyring_entry(service, args.account)
        print(f"deleted the keyring entry (service {service}, account {args.account})")
        return OK
    if getattr(args, "service", None) is not None:
        raise UsageError("--service goes with --account")
    from cordon_config.secrets import kind_of

    _, route = _keyring_route(args)
    kind = kind_of(route)
    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    if args.action == "set":
        return store_secret(route)
    try:
        delete_keyring_entry(service, account)
    except Failure as exc:
        if "no secret stored" in str(exc):
            raise Failure(f"no secret stored for {kind} {route.name} (service {service}, account {account})"
                          ) from None
        raise
    print(f"deleted the secret of {kind} {route.name} from the keyring (service {service}, account {account})")
    return OK


def _secret_check(args: argparse.Namespace) -> int:
    from cordon_config.approvals import approve_command, check_approved
    from cordon_config.secrets import SecretUnavailable, fetch_secret, kind_of

    paths, config = load(args)
    routes: list[Route | Listener] = (
        [find_secret_owner(config, args.name)] if args.name else [*config.routes, *config.listeners])
    pending = check_approved(config, paths)
    settings_pending = any(entry.item.kind == "settings" for entry in pending)  # [egress]/[audit]: no secret
    unapproved = {(entry.item.kind, entry.item.name) for entry in pending}
    results: list[dict[str, Any]] = []
    for route in routes:
        kind = kind_of(route)
        if (kind, route.name) in unapproved or settings_pending:
            names = None if settings_pending else [route.name]
            results.append({"route": route.name, "kind": kind, "ok": False, "source": route.secret.source,
                            "reason": "not fetched: " + ("the [tls]/[secrets] settings are" if settings_pending
                                                         else f"the {kind} is") + " not approved as written",
                            "hint": f"review it, then: {approve_command(names, paths.flag, kind)}"})
            continue
        try:
            fetch_secret(route, config=config)
        except SecretUnavailable as exc:
            results.append({"route": route.name, "kind": kind, "ok": False, "source": route.secret.source,
                            "reason": exc.reason, "hint": exc.hint})
        else:
            results.append({"route": route.name, "kind": kind, "ok": True, "source": route.secret.source})
    failed = sum(not result["ok"] for result in results)
    if args.json:
        print_json(results)
    elif not routes:
        print(f"no routes or listeners in {config.path}")
    else:
        width = max(len(route.name) for route in routes)
        for result, route in zip(results, routes, strict=True):
            where = describe_secret(route.secret)
            name = route.name.ljust(width)
            if result["ok"]:
                print(f"{colour('ok', '32', sys.stdout)}      {name}  ({where})")
            else:
                print(f"{colour('failed', '31', sys.stdout)}  {name}  ({where}): {result['reason']}")
                if result["hint"]:
                    print(f"        hint: {result['hint']}")
    return FAILED if failed else OK


