"""`cordon secret set|delete|check`: keyring storage and secret checks (values never printed)."""

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
    find_route,
    is_tty,
    load,
    print_json,
)
from cordon_config.model import Config, Route


def _keyring_route(args: argparse.Namespace) -> tuple[Config, Route]:
    _, config = load(args, changes=True)
    route = find_route(config, args.name)
    if route.secret.source != "keyring":
        raise UsageError(f"route {route.name} reads its secret from {describe_secret(route.secret)}; "
                         f"`cordon secret {args.action}` manages keyring secrets only",
                         f"store it in that source, or switch: cordon route edit {route.name} --source keyring")
    return config, route


def _keyring_failure(exc: Exception, what: str) -> Failure:
    from keyring.errors import NoKeyringError

    if isinstance(exc, NoKeyringError):
        return Failure(f"cannot {what}: no keyring backend is available here",
                       'run `cordon doctor`; on a headless machine use --source env, file or command')
    return Failure(f"cannot {what}: {type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def _read_secret(route: Route) -> str:
    if is_tty(sys.stdin):
        import getpass

        value = getpass.getpass(f"secret for route {route.name} (input hidden): ")
    else:
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    return value


def store_secret(route: Route) -> int:
    """Read the secret (no echo on a terminal, else stdin), validate it and store it in the keyring."""
    import keyring

    from cordon_config.secrets import header_value_problem

    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    value = _read_secret(route)
    problem = header_value_problem(value)
    if problem is not None:
        raise UsageError(f"secret not stored: {problem}")
    try:
        keyring.set_password(service, account, value)
    except Exception as exc:  # KeyringError, NoKeyringError, backend-specific (D-Bus) errors
        raise _keyring_failure(exc, "store the secret") from None
    print(f"stored the secret for route {route.name} in the keyring (service {service}, account {account})")
    print("a running proxy picks it up within secret_ttl seconds; `cordon secret check` verifies it")
    return OK


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
    _, route = _keyring_route(args)
    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    if args.action == "set":
        return store_secret(route)
    try:
        delete_keyring_entry(service, account)
    except Failure as exc:
        if "no secret stored" in str(exc):
            raise Failure(f"no secret stored for route {route.name} (service {service}, account {account})"
                          ) from None
        raise
    print(f"deleted the secret of route {route.name} from the keyring (service {service}, account {account})")
    return OK


def _secret_check(args: argparse.Namespace) -> int:
    from cordon_config.secrets import SecretUnavailable, fetch_secret

    _, config = load(args)
    routes = [find_route(config, args.name)] if args.name else list(config.routes)
    results: list[dict[str, Any]] = []
    for route in routes:
        try:
            fetch_secret(route, config=config)
        except SecretUnavailable as exc:
            results.append({"route": route.name, "ok": False, "source": route.secret.source,
                            "reason": exc.reason, "hint": exc.hint})
        else:
            results.append({"route": route.name, "ok": True, "source": route.secret.source})
    failed = sum(not result["ok"] for result in results)
    if args.json:
        print_json(results)
    elif not routes:
        print(f"no routes in {config.path}")
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


