"""`cordon token list|rotate|revoke` (values never printed) and the rotation hooks."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from cordon_config.commands.common import (
    FAILED,
    OK,
    TOKEN_RELOAD,
    Failure,
    UsageError,
    entry_point_hooks,
    print_json,
    run_hooks,
    scope_of,
)
from cordon_config.scope import ScopePaths


def run_token(args: argparse.Namespace) -> int:
    from cordon_config.tokens import TokenError, TokenStore

    paths = scope_of(args, changes=args.action != "list")
    try:
        store = TokenStore.load(paths.tokens_path)
    except TokenError as exc:
        raise Failure(str(exc)) from None
    if args.action == "list":
        infos = store.info() if store else []
        if args.json:
            print_json([{"name": info.name, "created": info.created.isoformat()} for info in infos])
        elif store is None:
            print(f"no tokens file at {paths.tokens_path}: the proxy runs without proxy tokens "
                  "(`cordon setup` creates it)")
        else:
            for info in infos:
                print(f"{info.name:<20} created {info.created.isoformat()}")
        return OK
    if store is None:
        raise Failure(f"no tokens file at {paths.tokens_path}", "run `cordon setup` first")
    try:
        if args.action == "revoke":
            if not store.revoke(args.name):
                raise UsageError(f"no token named {args.name!r}", "known: " + (", ".join(store.names()) or "none"))
            print(f"revoked token {args.name}; clients using it now get 407 from the proxy")
            if args.name != "default":
                print(f"if {args.name} is an integration, `cordon integration disable {args.name}` removes its files")
            print(TOKEN_RELOAD)
            return OK
        if args.all and args.name:
            raise UsageError("give a token NAME or --all, not both")
        names = store.names() if args.all else [args.name or "default"]
        if not args.all and names[0] not in store:
            raise UsageError(f"no token named {names[0]!r}", "known: " + (", ".join(store.names()) or "none"))
        hooks = rotation_hooks()
        failed = False
        for name in names:
            store.rotate(name)
            print(f"rotated token {name} (the new value is in {paths.tokens_path}; it is never printed)")
            failed |= _after_rotation(hooks, paths, name)
    except TokenError as exc:
        raise Failure(str(exc)) from None
    print(TOKEN_RELOAD)
    return FAILED if failed else OK


def rotation_hooks() -> list[Callable[[ScopePaths, str], Sequence[str]]]:
    """Callables of the ``cordon.token_rotated`` entry-point group (cordon-setup rewrites integration files)."""
    return entry_point_hooks("cordon.token_rotated")


def _after_rotation(hooks: Sequence[Callable[[ScopePaths, str], Sequence[str]]], paths: ScopePaths,
                    name: str) -> bool:
    """Run the rotation hooks for token ``name``; True when one failed."""
    if not hooks:
        if name != "default":
            print(f"  run `cordon setup {name}` to write the new token into the {name} integration's files")
        return False
    return run_hooks(list(hooks), (paths, name), failure=f"could not update the files using token {name}",
                     hint=f"run `cordon setup {name}`")
