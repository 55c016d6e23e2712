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


def _keyring_route(args: argparse.Namespace) -> tuple[Config, Route | Listener]:
    from cordon_config.secrets import kind_of

    _, config = load(args)
    route = find_secret_owner(config, args.name)
    if route.secret.source != "keyring":
        kind = kind_of(route)
        raise UsageError(f"{kind} {route.name} reads its secret from {describe_secret(route.secret)}; "
                         f"`cordon secret {args.action}` manages keyring secrets only",
                         f"store it in that source, or switch: cordon {kind} edit {route.name} --source keyring")
    return config, route


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
    import keyring

    from cordon_config.secrets import kind_of, value_problem

    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    value = _read_secret(route)
    problem = value_problem(route, value)
    if problem is not None:
        raise UsageError(f"secret not stored: {problem}")
    try:
        keyring.set_password(service, account, value)
    except Exception as exc:  # KeyringError, NoKeyringError, backend-specific (D-Bus) errors
        raise _keyring_failure(exc, "store the secret") from None
    print(f"stored the secret for {kind_of(route)} {route.name} in the keyring (service {service}, account {account})")
    print("a running proxy picks it up within secret_ttl seconds; `cordon secret check` verifies it")
    return OK


def run_secret(args: argparse.Namespace) -> int:
    if args.action == "check":
        return _secret_check(args)
    import keyring
    from keyring.errors import PasswordDeleteError

    from cordon_config.secrets import kind_of

    _, route = _keyring_route(args)
    service, account = route.secret.fields.get("service", "cordon"), route.secret.fields["account"]
    if args.action == "set":
        return store_secret(route)
    try:
        keyring.delete_password(service, account)
    except PasswordDeleteError:
        raise Failure(f"no secret stored for {kind_of(route)} {route.name} (service {service}, account {account})"
                      ) from None
    except Exception as exc:  # KeyringError, NoKeyringError, backend-specific (D-Bus) errors
        raise _keyring_failure(exc, "delete the secret") from None
    print(f"deleted the secret of {kind_of(route)} {route.name} from the keyring (service {service}, "
          f"account {account})")
    return OK


def _secret_check(args: argparse.Namespace) -> int:
    from cordon_config.secrets import SecretUnavailable, fetch_secret, kind_of

    _, config = load(args)
    routes = [find_secret_owner(config, args.name)] if args.name else [*config.routes, *config.listeners]
    results: list[dict[str, Any]] = []
    for route in routes:
        try:
            fetch_secret(route, config=config)
        except SecretUnavailable as exc:
            results.append({"route": route.name, "kind": kind_of(route), "ok": False, "source": route.secret.source,
                            "reason": exc.reason, "hint": exc.hint})
        else:
            results.append({"route": route.name, "kind": kind_of(route), "ok": True, "source": route.secret.source})
    failed = sum(not result["ok"] for result in results)
    if args.json:
        print_json(results)
    elif not routes:
        print(f"no routes or listeners in {config.path}")
    else:
        for result, route in zip(results, routes, strict=True):
            where = describe_secret(route.secret)
            if result["ok"]:
                print(f"{colour('ok', '32', sys.stdout)}      {route.name}  ({where})")
            else:
                print(f"{colour('failed', '31', sys.stdout)}  {route.name}  ({where}): {result['reason']}")
                if result["hint"]:
                    print(f"        hint: {result['hint']}")
    return FAILED if failed else OK


