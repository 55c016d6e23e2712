"""Command line: ``cordon-ca generate|show|bundle|path|trust|untrust`` and ``cordon trust|untrust``.

The only cordon_ca module that imports cordon_config (the shared ``--scope/--config`` helper).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cordon_config.argparsing import CordonArgumentParser as _Parser
from cordon_config.facts import FactsError, approved_hosts, read_facts
from cordon_config.scope import ScopeError, ScopePaths, add_scope_arguments, scope_from_args, with_scope_flag

from cordon_ca import trust
from cordon_ca.authority import CertificateAuthority, load_or_create_ca, regenerate_ca
from cordon_ca.bundle import write_combined_bundle
from cordon_ca.errors import CAError, TrustError
from cordon_ca.scope_ca import ca_matches, permitted_for


class UsageError(Exception):
    """Bad input: printed as one ``cordon: ...`` line, exit 2."""


@dataclass(frozen=True)
class CAPaths:
    """Where this scope's CA lives ([tls] paths from cordon.toml when set, else the scope's) and what it permits."""

    scope: ScopePaths
    cert: Path
    key: Path
    bundle: Path
    permitted_hosts: frozenset[str] | None  # the approved routes' hosts; None with [tls] name_constraints = false


def ca_paths(args: argparse.Namespace) -> CAPaths:
    """Resolve the scope and read its CA paths, ``name_constraints`` and approved hosts from cordon.toml."""
    try:
        scope = scope_from_args(args)
        facts = read_facts(scope)
    except (ScopeError, FactsError) as exc:
        raise UsageError(str(exc)) from None
    if facts is None:
        return CAPaths(scope, scope.ca_cert, scope.ca_key, scope.combined_bundle, frozenset())
    permitted = permitted_for(facts.name_constraints, approved_hosts(facts, scope))
    return CAPaths(scope, facts.ca_cert, facts.ca_key, scope.combined_bundle,
                   None if permitted is None else frozenset(permitted))


def _fail(exc: CAError) -> int:
    sys.stderr.write(f"cordon: {exc}\n")
    if exc.hint:
        sys.stderr.write(f"hint: {exc.hint}\n")
    return 1


def _describe(ca: CertificateAuthority, paths: CAPaths) -> dict[str, Any]:
    return {
        "subject": ca.subject,
        "fingerprint_sha256": ca.fingerprint_sha256,
        "not_before": ca.not_before.isoformat(),
        "not_after": ca.not_after.isoformat(),
        "key_type": ca.key_type,
        "cert_path": str(ca.cert_path),
        "key_path": str(ca.key_path),
        "bundle_path": str(paths.bundle),
        "namespace": paths.scope.namespace,
        "permitted_hosts": None if ca.permitted_hosts is None else sorted(ca.permitted_hosts),
    }


def _print_fields(info: dict[str, Any]) -> None:
    labels = {
        "subject": "subject", "fingerprint_sha256": "sha256", "not_after": "not after", "key_type": "key type",
        "cert_path": "certificate", "key_path": "key", "bundle_path": "bundle",
    }
    for key, label in labels.items():
        print(f"{label:<12} {info[key]}")
    if info["permitted_hosts"] is not None:
        print(f"{'constrained':<12} {', '.join(info['permitted_hosts']) or '(no host)'}")


# -- commands -----------------------------------------------------------------------------------------------
def _cmd_generate(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    existed = paths.cert.exists() and paths.key.exists()
    rebuilt: Path | None = None
    if args.force and (paths.cert.exists() or paths.key.exists()):
        ca = regenerate_ca(paths.cert, paths.key, namespace=paths.scope.namespace, permitted_hosts=paths.permitted_hosts)
        state = "replaced (the old key is destroyed)"
        if paths.bundle.exists():  # a bundle with the old CA would make every client refuse the new leaves
            rebuilt = write_combined_bundle(paths.cert, paths.bundle)
    else:
        ca = load_or_create_ca(
            paths.cert, paths.key, namespace=paths.scope.namespace, permitted_hosts=paths.permitted_hosts
        )
        state = "exists (unchanged; --force replaces it)" if existed else "created"
        if existed and paths.permitted_hosts is not None and not ca_matches(ca, paths.permitted_hosts):
            sys.stderr.write(
                "note: the CA's name constraints are not exactly the routed hosts; "
                "`generate --force` re-issues it for them (and destroys the old key)\n"
            )
    if args.json:
        print(json.dumps({"status": state.split(" ")[0], **_describe(ca, paths)}, indent=2))
    else:
        print(f"CA {state}: {ca.cert_path}")
        print(f"sha256 {ca.fingerprint_sha256}")
        if rebuilt is not None:
            print(f"rebuilt the combined CA bundle: {rebuilt}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    info = _describe(CertificateAuthority.load(paths.cert, paths.key), paths)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        _print_fields(info)
    return 0


def _cmd_bundle(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    out = write_combined_bundle(paths.cert, Path(args.out) if args.out else paths.bundle)
    print(out)
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    info = {
        "cert": str(paths.cert), "key": str(paths.key), "bundle": str(paths.bundle),
        "state_dir": str(paths.scope.state_dir), "config": str(paths.scope.config_path),
        "scope": paths.scope.scope, "namespace": paths.scope.namespace,
    }
    if args.json:
        print(json.dumps({args.which: info[args.which]} if args.which else info, indent=2))
    elif args.which:
        print(info[args.which])
    else:
        for key, value in info.items():
            print(f"{key:<10} {value}")
    return 0


def _detect_store() -> trust.TrustStore | None:
    return trust.detect_trust_store()


def _no_store() -> int:
    sys.stderr.write("cordon: no supported trust store tool found (update-ca-certificates, update-ca-trust, security)\n")
    sys.stderr.write("hint: point clients at the combined bundle instead: eval \"$(cordon env)\"\n")
    return 1


def _cmd_trust(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    store = _detect_store()
    add_java, _ = trust.java_commands(paths.cert, paths.scope.namespace)
    if store is None:
        return _no_store()
    if args.dry_run:
        for command in trust.trust_commands(store, paths.cert, paths.scope.namespace):
            print(command)
        print(add_java)
        return 0
    try:
        where = trust.install_ca(store, paths.cert, paths.scope.namespace)
    except TrustError as exc:
        return _fail(exc)
    print(f"trusted {paths.cert} ({store.kind}: {where})")
    print(f"Java uses its own store; to trust the CA there too run:\n  {add_java}")
    return 0


def _cmd_untrust(args: argparse.Namespace) -> int:
    paths = ca_paths(args)
    store = _detect_store()
    _, remove_java = trust.java_commands(paths.cert, paths.scope.namespace)
    if store is None:
        return _no_store()
    if args.dry_run:
        for command in trust.untrust_commands(store, paths.cert, paths.scope.namespace):
            print(command)
        print(remove_java)
        return 0
    try:
        removed = trust.remove_ca(store, paths.cert, paths.scope.namespace)
    except TrustError as exc:
        return _fail(exc)
    print(f"removed the cordon CA from the {store.kind} trust store" if removed else "the cordon CA was not in the system trust store")
    print(f"if you added it to Java's store, remove it with:\n  {remove_java}")
    return 0


# -- parsers ------------------------------------------------------------------------------------------------
def _common(parser: argparse.ArgumentParser, *, json_flag: bool = False) -> None:
    add_scope_arguments(parser)
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON")


def _trust_parser(parser: argparse.ArgumentParser, *, remove: bool) -> None:
    _common(parser)
    parser.add_argument("--dry-run", action="store_true", help="only print the commands that would run")
    parser.set_defaults(func=_cmd_untrust if remove else _cmd_trust)


_TRUST_EPILOG = """examples:
  {prog}                 # {verb} this project's CA (needs root on Linux; prints the sudo commands otherwise)
  {prog} --scope user --dry-run
"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``cordon-ca`` parser."""
    prog = prog or "cordon-ca"
    parser = _Parser(
        prog=prog,
        description="cordon's local CA: create it, show it, build the combined CA bundle, trust it.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"examples:\n  {prog} generate\n  {prog} show --scope user --json\n",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    raw = argparse.RawDescriptionHelpFormatter

    gen = sub.add_parser(
        "generate", help="create the CA if missing (idempotent)", formatter_class=raw,
        epilog=f"examples:\n  {prog} generate\n  {prog} generate --force   # new CA for the routed hosts; the old key is "
        "destroyed\n",
    )
    _common(gen, json_flag=True)
    gen.add_argument("--force", action="store_true",
                     help="replace an existing CA (name-constrained to the routed hosts; the old key is destroyed)")
    gen.set_defaults(func=_cmd_generate)

    show = sub.add_parser(
        "show", help="subject, SHA-256 fingerprint, expiry, key type, paths", formatter_class=raw,
        epilog=f"examples:\n  {prog} show\n  {prog} show --scope user --json\n",
    )
    _common(show, json_flag=True)
    show.set_defaults(func=_cmd_show)

    bundle = sub.add_parser(
        "bundle", help="rebuild the combined bundle (system store + cordon CA)", formatter_class=raw,
        epilog=f"examples:\n  {prog} bundle\n  {prog} bundle --out /tmp/combined-ca.pem\n",
    )
    _common(bundle)
    bundle.add_argument("--out", metavar="PATH", help="write here instead of the scope's combined-ca.pem")
    bundle.set_defaults(func=_cmd_bundle)

    path = sub.add_parser(
        "path", help="print the CA, key and bundle paths", formatter_class=raw,
        epilog=f"examples:\n  {prog} path cert\n  {prog} path --json\n",
    )
    _common(path, json_flag=True)
    path.add_argument("which", nargs="?", choices=("cert", "key", "bundle", "state_dir", "config", "namespace"))
    path.set_defaults(func=_cmd_path)

    for name, remove in (("trust", False), ("untrust", True)):
        cmd = sub.add_parser(
            name, help=f"{'remove the CA from' if remove else 'add the CA to'} the OS trust store",
            formatter_class=raw, epilog=_TRUST_EPILOG.format(prog=f"{prog} {name}", verb=name),
        )
        _trust_parser(cmd, remove=remove)
    return parser


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    args = None
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help (0) or a usage error already printed (2): return, don't exit
            return exc.code if isinstance(exc.code, int) else 2
        return int(args.func(args))
    except UsageError as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return 2
    except CAError as exc:
        if exc.hint and args is not None:
            try:
                exc.hint = with_scope_flag(exc.hint, scope_from_args(args))
            except ScopeError:
                pass
        return _fail(exc)
    except KeyboardInterrupt:
        return 130


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-ca`` (also ``cordon ca``)."""
    return _run(build_parser(prog), argv)


def _single(prog: str, *, remove: bool) -> argparse.ArgumentParser:
    verb = "untrust" if remove else "trust"
    parser = _Parser(
        prog=prog,
        description=(
            "Remove cordon's CA from the OS trust store." if remove else
            "Add cordon's CA to the OS trust store (Debian/Ubuntu, Fedora/RHEL, macOS login keychain). "
            "Never done implicitly; most clients only need the env contract (cordon env)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=_TRUST_EPILOG.format(prog=prog, verb=verb),
    )
    _trust_parser(parser, remove=remove)
    return parser


def trust_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon trust``."""
    return _run(_single(prog or "cordon trust", remove=False), argv)


def untrust_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon untrust``."""
    return _run(_single(prog or "cordon untrust", remove=True), argv)
