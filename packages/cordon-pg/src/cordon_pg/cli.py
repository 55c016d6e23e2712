"""``cordon-pg check``: check the PostgreSQL listeners of a scope (port, upstream reachability, upstream TLS).

Exit codes: 0 nothing failed, 1 a check failed, 2 bad input (one ``cordon: ...`` line).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

from cordon_config.argparsing import CordonArgumentParser as _Parser

from cordon_pg import __version__

__all__ = ["build_parser", "main", "pg_main"]

EPILOG = """\
examples:
  {prog} check                      every listener of ./cordon.toml
  {prog} check prod-db --json       one listener, as JSON
  {prog} check --scope user
what it checks: the listener's port is free (or held by the running cordon) and its upstream is reachable and,
under upstream_tls = "verify-full", presents a certificate valid for its name. Secrets: cordon secret check.
"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``cordon-pg`` parser."""
    from cordon_config.scope import add_scope_arguments

    prog = prog or "cordon-pg"
    epilog = EPILOG.format(prog=prog)
    parser = _Parser(prog=prog, description="cordon's PostgreSQL credential listeners.",
                     epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    check = sub.add_parser("check", help="check the listeners' ports and upstream servers",
                           description="Check the listeners' ports and upstream servers (TLS verified).",
                           epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scope_arguments(check)
    check.add_argument("names", nargs="*", metavar="NAME", help="listeners to check (default: all)")
    check.add_argument("--json", action="store_true", help="print the findings as JSON")
    return parser


def pg_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon pg check ...`` (the same as ``cordon-pg check ...``)."""
    return main(argv, prog=prog or "cordon pg")


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-pg check [NAME...] [--json]``."""
    from cordon_config import ConfigError, load_config
    from cordon_config.identity import IdentityError, probe
    from cordon_config.scope import ScopeError, scope_from_args

    from cordon_pg.check import check_listeners

    args = build_parser(prog).parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        paths = scope_from_args(args)
        config = load_config(paths.config_path)
    except ScopeError as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return 2
    except ConfigError as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return 1
    unknown = [name for name in args.names if config.listener(name) is None]
    if unknown:
        known = ", ".join(item.name for item in config.listeners) or "none"
        sys.stderr.write(f"cordon: no listener named {unknown[0]!r} in {config.path}\nhint: listeners: {known}\n")
        return 2
    try:  # this scope's own proxy, proven by its identity key (never something else on the port)
        running = probe(paths, config.listen, timeout=1.0).ours
    except IdentityError:
        running = False
    findings = check_listeners(config, proxy_running=running, names=args.names or None)
    if args.json:
        sys.stdout.write(json.dumps(findings, indent=2) + "\n")
    elif not findings:
        sys.stdout.write(f"no listeners in {config.path}\n")
    for finding in findings if not args.json else ():
        sys.stdout.write(f"{finding['status']:5} {finding['check']}: {finding['message']}\n")
        if finding["fix"]:
            sys.stdout.write(f"      fix: {finding['fix']}\n")
    return 1 if any(finding["status"] == "fail" for finding in findings) else 0
