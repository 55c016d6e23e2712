"""Command line: ``cordon route|listener|secret|token|egress|audit ...`` (and ``cordon-config ...`` the same).

Bad input prints one ``cordon: ...`` line on stderr and exits 2; failures exit 1; Ctrl-C exits 130.
Secret values and token values are never printed.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cordon_config.argparsing import CordonArgumentParser as _Parser
from cordon_config.commands.common import FAILED, INTERRUPTED, USAGE, UsageError
from cordon_config.commands.sources import add_source_arguments
from cordon_config.files import SymlinkRefused
from cordon_config.scope import add_scope_arguments

# -- parsers --------------------------------------------------------------------------------------------------

ROUTE_EPILOG = """\
examples:
  {prog} add --name openai --host api.openai.com --header-name Authorization --scheme Bearer \\
      --source keyring --account openai
  {prog} add --name anthropic --host api.anthropic.com --header-name x-api-key --source env --var ANTHROPIC_KEY
  {prog} add --name github --host api.github.com --auth-type basic --username x-access-token \\
      --source command --argv "gh auth token"
  {prog} edit openai --source 1password --vault Private --item OpenAI --field credential
  {prog} edit openai --methods POST,GET --paths "/v1/responses,/v1/chat/completions,/v1/models*"
  {prog} edit openai --requests-per-minute 120 --burst 20
  {prog} edit openai --methods "" --paths ""          any method and path again
  {prog} list --json
  {prog} show openai --json
  {prog} remove github --yes --delete-secret
  {prog} approve exfil              show what changed in a hand-edited route, ask, record the approval
  {prog} approve --all --yes        approve everything as cordon.toml says now (after reviewing `list`)
"""
SECRET_EPILOG = """\
examples:
  {prog} set openai                 prompts without echo (reads stdin when not a terminal)
  printf %s "$KEY" | {prog} set openai
  {prog} check                      fetch every route's secret and report ok/failed (never the value)
  {prog} delete openai              remove the stored secret from the keyring
  {prog} delete --account openai    the entry of a route that no longer exists
"""
EGRESS_EPILOG = """\
examples:
  {prog} list                       what happens to hosts without a route
  {prog} mode deny                  refuse every host without a route unless it is allowed
  {prog} allow github.com "*.npmjs.org" pypi.org files.pythonhosted.org
  {prog} deny github.com            take it off the allow list again
  {prog} mode tunnel                pass hosts without a route untouched again (the default)
"""
AUDIT_EPILOG = """\
examples:
  {prog} verify                     check every line's MAC and the chain; names each changed line
  {prog} tail -n 50                 the last 50 lines
  {prog} tail -f                    follow new lines (Ctrl-C to stop)
  {prog} export --since 24h --json  the last day as JSON lines (each with its MAC)
  {prog} export --since 2026-05-01 --until 2026-05-02T12:00Z
"""
LISTENER_EPILOG = """\
examples:
  {prog} add --name prod-db --port 15432 --upstream db.example.com:5432 --username app_user \\
      --source 1password --vault Engineering --item "Postgres Prod" --field password
  {prog} add --name local-db --port 15433 --upstream 127.0.0.1 --username dev --upstream-tls disable \\
      --source env --var DEV_DB_PASSWORD
  {prog} edit prod-db --client-tls require
  {prog} list --json
  {prog} show prod-db
  {prog} remove local-db --yes
  {prog} approve prod-db            after an edit by hand (shows what changed, asks first)
then: cordon secret set prod-db (keyring source), cordon start, and
  psql "host=127.0.0.1 port=15432 user=app_user dbname=app"
"""
TOKEN_EPILOG = """\
examples:
  {prog} list                       names and creation times (values are never printed)
  {prog} rotate codex               new value; the codex integration's files are rewritten
  {prog} revoke claude-code
"""
CONFIG_EPILOG = """\
examples:
  {prog} path                      which cordon.toml this directory uses (found upwards, like git)
  {prog} set listen 6801           move this scope's proxy to another port
  {prog} set secret_ttl 60
  {prog} get listen --json
  {prog} unset tls.upstream_ca_file
  {prog} migrate --dry-run          what legacy forms would be rewritten (auth bearer/api_key, [[secrets.providers]])
  {prog} migrate                    rewrite them in cordon's own terms (as it was: cordon.toml.migrate.bak)
"""
SCOPES_EPILOG = """\
examples:
  {prog} list                      every scope: namespace, port, state, cordon.toml
  {prog} list --json
  {prog} prune --dry-run           what prune would remove
  {prog} prune --yes               remove the state of projects whose cordon.toml is gone
"""


def _route_fields(parser: argparse.ArgumentParser, *, edit: bool) -> None:
    group = parser.add_argument_group("route")
    if edit:
        group.add_argument("--name", dest="new_name", metavar="NEW", help="rename the route")
    else:
        group.add_argument("--name", help="route name: lower-case letters, digits, '.', '_', '-'")
    group.add_argument("--host", metavar="HOST", help="the API host to match, e.g. api.openai.com")
    group.add_argument("--port", type=int, help="match only this port (default: any" +
                       ("; 0 = any again)" if edit else ")"))
    group.add_argument("--auth-type", choices=("header", "basic"), help="header (default) or basic")
    group.add_argument("--header-name", metavar="NAME", help="header to inject, e.g. Authorization or x-api-key")
    group.add_argument("--scheme", help='prefix of the value, e.g. Bearer (required for Authorization)')
    group.add_argument("--username", metavar="USER", help="user name for --auth-type basic (the secret is the password)")
    group.add_argument("--allow-plain-http", action=argparse.BooleanOptionalAction, default=None,
                       help="also inject into plain http:// requests to this host (default: refuse them)")
    policy = parser.add_argument_group("least privilege")
    clear = ' ("" = any again)' if edit else ""
    policy.add_argument("--methods", metavar="LIST", help="comma-separated methods the route allows, e.g. POST,GET "
                        f"(default: any){clear}")
    policy.add_argument("--paths", metavar="LIST", help='comma-separated paths: exact, or a prefix ending in "*", '
                        f'e.g. "/v1/responses,/v1/models*" (default: any){clear}')
    policy.add_argument("--requests-per-minute", type=int, metavar="N",
                        help="rate limit of the route (token bucket; default: none" + ("; 0 = none again)" if edit else ")"))
    policy.add_argument("--burst", type=int, metavar="N", help="requests allowed at once (default: --requests-per-minute)")
    policy.add_argument("--scrub", dest="scrub_responses", action=argparse.BooleanOptionalAction, default=None,
                        help="mask the key in responses (default: on; --no-scrub lets an echoed key through)")
    add_source_arguments(parser, "route")


def _leaf(sub: argparse._SubParsersAction[_Parser], name: str, help_text: str, epilog: str, prog_of: str) -> argparse.ArgumentParser:
    parser = sub.add_parser(name, help=help_text, description=help_text,
                            epilog=epilog.format(prog=prog_of),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    add_scope_arguments(parser)
    return parser


def _item_commands(parser: argparse.ArgumentParser, noun: str, added: str, epilog: str,
                   fields: Callable[..., None], all_help: str) -> dict[str, argparse.ArgumentParser]:
    """add/edit/list/show/remove/approve for one kind of cordon.toml item (routes, listeners); the leaves by
    action, for the options only one kind has."""
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    add = _leaf(sub, "add", f"add {added} (a wizard on a terminal when no flags are given)", epilog, prog)
    fields(add, edit=False)
    edit = _leaf(sub, "edit", f"change only the given fields of a {noun}", epilog, prog)
    edit.add_argument("name", metavar="NAME")
    fields(edit, edit=True)
    lister = _leaf(sub, "list", f"list the {noun}s", epilog, prog)
    lister.add_argument("--json", action="store_true", help="print JSON")
    show = _leaf(sub, "show", f"show one {noun}", epilog, prog)
    show.add_argument("name", metavar="NAME")
    show.add_argument("--json", action="store_true", help="print JSON")
    remove = _leaf(sub, "remove", f"remove a {noun} (asks first on a terminal)", epilog, prog)
    remove.add_argument("name", metavar="NAME")
    remove.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    approve = _leaf(sub, "approve", f"approve {noun}s as cordon.toml says now: shows what changed since the "
                    "last approval and asks on a terminal", epilog, prog)
    approve.add_argument("names", nargs="*", metavar="NAME", help=f"the {noun}s to approve")
    approve.add_argument("--all", action="store_true", help=all_help)
    approve.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    approve.add_argument("--json", action="store_true", help="print what was (or would be) approved as JSON")
    return {"add": add, "edit": edit, "list": lister, "show": show, "remove": remove, "approve": approve}


def _add_route_commands(parser: argparse.ArgumentParser) -> None:
    leaves = _item_commands(parser, "route", "a route", ROUTE_EPILOG, _route_fields,
                            "every route and the [tls]/[secrets] settings (approvals of removed routes are dropped)")
    leaves["remove"].add_argument("--delete-secret", action=argparse.BooleanOptionalAction, default=None,
                                  help="also delete the route's keyring secret (asked on a terminal; kept otherwise)")


def _add_listener_commands(parser: argparse.ArgumentParser) -> None:
    from cordon_config.commands.listener import add_listener_fields

    _item_commands(parser, "listener", "a PostgreSQL listener", LISTENER_EPILOG, add_listener_fields,
                   "every listener")


def _add_secret_commands(parser: argparse.ArgumentParser) -> None:
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    setter = _leaf(sub, "set", "store a keyring route's secret (no echo; stdin when not a terminal)",
                   SECRET_EPILOG, prog)
    setter.add_argument("name", metavar="NAME")
    delete = _leaf(sub, "delete", "delete a keyring route's secret (or, with --account, any cordon keyring entry)",
                   SECRET_EPILOG, prog)
    delete.add_argument("name", metavar="NAME", nargs="?", help="the route")
    delete.add_argument("--account", metavar="NAME", help="delete this keyring account's entry instead (e.g. the "
                        "secret of a route already removed)")
    delete.add_argument("--service", metavar="NAME", help='with --account: the keyring service (default "cordon")')
    check = _leaf(sub, "check", "fetch secrets and report ok/failed (values never shown)", SECRET_EPILOG, prog)
    check.add_argument("name", metavar="NAME", nargs="?", help="one route (default: all)")
    check.add_argument("--json", action="store_true", help="print JSON")


def _add_token_commands(parser: argparse.ArgumentParser) -> None:
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    lister = _leaf(sub, "list", "list proxy tokens (names and creation times)", TOKEN_EPILOG, prog)
    lister.add_argument("--json", action="store_true", help="print JSON")
    rotate = _leaf(sub, "rotate", "give a token a new value", TOKEN_EPILOG, prog)
    rotate.add_argument("name", metavar="NAME", nargs="?", help='token name (default: "default")')
    rotate.add_argument("--all", action="store_true", help="rotate every token")
    revoke = _leaf(sub, "revoke", "delete a token", TOKEN_EPILOG, prog)
    revoke.add_argument("name", metavar="NAME")


def _add_config_commands(parser: argparse.ArgumentParser) -> None:
    from cordon_config.commands.settings import settings_help

    prog = parser.prog
    epilog = settings_help() + "\n" + CONFIG_EPILOG
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    path = _leaf(sub, "path", "print the cordon.toml this directory uses", CONFIG_EPILOG, prog)
    path.add_argument("--json", action="store_true", help="print JSON (scope, namespace, state dir too)")
    get = _leaf(sub, "get", "print a setting (its default when unset)", epilog, prog)
    get.add_argument("key", metavar="KEY")
    get.add_argument("--json", action="store_true", help="print JSON")
    setter = _leaf(sub, "set", "change a setting (validated first; the file keeps its comments)", epilog, prog)
    setter.add_argument("key", metavar="KEY")
    setter.add_argument("value", metavar="VALUE")
    unset = _leaf(sub, "unset", "remove a setting (back to its default)", epilog, prog)
    unset.add_argument("key", metavar="KEY")

    migrate = _leaf(sub, "migrate", "rewrite legacy forms (auth types bearer/api_key, [[secrets.providers]]) in "
                    "cordon's own terms, losslessly, keeping the file as it was (.migrate.bak)", CONFIG_EPILOG, prog)
    migrate.add_argument("-n", "--dry-run", action="store_true", help="say what would change; write nothing")
    migrate.add_argument("--json", action="store_true", help="print JSON")

def _add_scopes_commands(parser: argparse.ArgumentParser) -> None:
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    lister = sub.add_parser("list", help="every cordon scope of this user", description="List every cordon scope "
                            "(state directory under $XDG_CONFIG_HOME/cordon) with its port and cordon.toml.",
                            epilog=SCOPES_EPILOG.format(prog=prog), formatter_class=argparse.RawDescriptionHelpFormatter)
    lister.add_argument("--json", action="store_true", help="print JSON")
    prune = sub.add_parser("prune", help="remove the state of scopes whose cordon.toml is gone",
                           description="Remove the state directories (CA, tokens, logs) of project scopes whose "
                           "recorded cordon.toml no longer exists. Asks first on a terminal.",
                           epilog=SCOPES_EPILOG.format(prog=prog), formatter_class=argparse.RawDescriptionHelpFormatter)
    prune.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    prune.add_argument("-n", "--dry-run", action="store_true", help="list what would be removed; remove nothing")


def _add_egress_commands(parser: argparse.ArgumentParser) -> None:
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    allow = _leaf(sub, "allow", "add hosts to [egress] allow", EGRESS_EPILOG, prog)
    allow.add_argument("hosts", metavar="HOST", nargs="+", help='a host name, an IP address, or "*.domain"')
    deny = _leaf(sub, "deny", "remove hosts from [egress] allow", EGRESS_EPILOG, prog)
    deny.add_argument("hosts", metavar="HOST", nargs="+")
    mode = _leaf(sub, "mode", "set [egress] unrouted: tunnel (the default) or deny", EGRESS_EPILOG, prog)
    mode.add_argument("mode", choices=("tunnel", "deny"))
    lister = _leaf(sub, "list", "show the egress policy", EGRESS_EPILOG, prog)
    lister.add_argument("--json", action="store_true", help="print JSON")


def _add_audit_commands(parser: argparse.ArgumentParser) -> None:
    prog = parser.prog
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=_Parser)
    check = _leaf(sub, "verify", "check the audit log's MACs and chain; name each changed line", AUDIT_EPILOG, prog)
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    tail = _leaf(sub, "tail", "show the last lines of the audit log", AUDIT_EPILOG, prog)
    tail.add_argument("-n", "--lines", type=int, default=20, metavar="N", help="how many (default: 20)")
    tail.add_argument("-f", "--follow", action="store_true", help="keep printing new lines (Ctrl-C to stop)")
    tail.add_argument("--json", action="store_true", help="print the lines as written (JSON, with MACs)")
    export = _leaf(sub, "export", "print the audit log, or a time range of it", AUDIT_EPILOG, prog)
    export.add_argument("--since", metavar="TIME", help="ISO time (UTC unless a zone is given) or a duration ago: "
                        "30m, 2h, 7d")
    export.add_argument("--until", metavar="TIME", help="same forms as --since")
    export.add_argument("--json", action="store_true", help="print the lines as written (JSON, with MACs)")


_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], str]] = {
    "route": ("add, edit, list, show, remove or approve routes in cordon.toml", _add_route_commands, ROUTE_EPILOG),
    "listener": ("add, edit, list, show, remove or approve PostgreSQL listeners in cordon.toml",
                 _add_listener_commands, LISTENER_EPILOG),
    "secret": ("store, delete or check route and listener secrets", _add_secret_commands, SECRET_EPILOG),
    "token": ("list, rotate or revoke proxy tokens", _add_token_commands, TOKEN_EPILOG),
    "config": ("show or change cordon.toml settings (port, secret_ttl, [tls], [limits]); migrate legacy forms", _add_config_commands,
               CONFIG_EPILOG),
    "scopes": ("list cordon's scopes; prune those whose project is gone", _add_scopes_commands, SCOPES_EPILOG),
    "egress": ("allow, deny or list hosts without a route ([egress])", _add_egress_commands, EGRESS_EPILOG),
    "audit": ("verify, tail or export the audit log", _add_audit_commands, AUDIT_EPILOG),
}


def _command_parser(command: str, prog: str) -> argparse.ArgumentParser:
    summary, fill, epilog = _COMMANDS[command]
    parser = _Parser(prog=prog, description=summary, epilog=epilog.format(prog=prog),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    fill(parser)
    return parser


def build_parser(prog: str = "cordon-config") -> argparse.ArgumentParser:
    """The ``cordon-config`` parser: ``route``, ``listener``, ``secret``, ``token``, ``config``, ``scopes``,
    ``egress`` and ``audit`` commands."""
    parser = _Parser(prog=prog, description="cordon-config: cordon.toml routes, listeners and settings, their "
                     "secrets, proxy tokens, the list of scopes, the egress policy and the audit log.",
                     epilog=f"examples:\n  {prog} route list\n  {prog} listener list\n  {prog} secret check\n"
                     f"  {prog} token list\n  {prog} config set listen 6801\n  {prog} scopes list\n"
                     f"  {prog} egress list\n  {prog} audit verify\n",
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    for name, (summary, fill, epilog) in _COMMANDS.items():
        child = sub.add_parser(name, help=summary, description=summary, epilog=epilog.format(prog=f"{prog} {name}"),
                               formatter_class=argparse.RawDescriptionHelpFormatter)
        fill(child)
    return parser


# -- entry points ---------------------------------------------------------------------------------------------


def _run(parser: argparse.ArgumentParser, argv: Sequence[str] | None, handler: Callable[[argparse.Namespace], int]
         ) -> int:
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
        return handler(args)
    except UsageError as exc:
        sys.stderr.write(f"cordon: {exc}\n" + (f"hint: {exc.hint}\n" if exc.hint else ""))
        return exc.code
    except KeyboardInterrupt:  # a prompt may have left the cursor mid-line
        sys.stderr.write("\ncordon: interrupted\n")
        return INTERRUPTED
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else USAGE)
    except BrokenPipeError:
        return FAILED
    except SymlinkRefused as exc:
        sys.stderr.write(f"cordon: {exc}\nhint: {exc.hint}\n")
        return FAILED
    except OSError as exc:  # permission denied, read-only file system, disk full ...
        from cordon_config.files import os_error_message

        message, hint = os_error_message(exc)
        sys.stderr.write(f"cordon: {message}\n" + (f"hint: {hint}\n" if hint else ""))
        return FAILED


def route_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon route add|edit|list|show|remove|approve``."""
    from cordon_config.commands.route import run_route

    return _run(_command_parser("route", prog or "cordon route"), argv, run_route)


def listener_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon listener add|edit|list|show|remove``."""
    from cordon_config.commands.listener import run_listener

    return _run(_command_parser("listener", prog or "cordon listener"), argv, run_listener)


def secret_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon secret set|delete|check``."""
    from cordon_config.commands.secret import run_secret

    return _run(_command_parser("secret", prog or "cordon secret"), argv, run_secret)


def token_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon token list|rotate|revoke``."""
    from cordon_config.commands.token import run_token

    return _run(_command_parser("token", prog or "cordon token"), argv, run_token)


def config_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon config path|get|set|unset|migrate``."""
    return _run(_command_parser("config", prog or "cordon config"), argv, _config_handler)


def _config_handler(args: argparse.Namespace) -> int:
    """``migrate`` rewrites legacy forms (commands/migrate.py); the other actions are settings (commands/settings.py)."""
    from cordon_config.commands.migrate import run_migrate
    from cordon_config.commands.settings import run_config

    return run_migrate(args) if args.action == "migrate" else run_config(args)


def scopes_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon scopes list|prune``."""
    from cordon_config.commands.scopes import run_scopes

    return _run(_command_parser("scopes", prog or "cordon scopes"), argv, run_scopes)


def egress_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon egress allow|deny|mode|list``."""
    from cordon_config.commands.egress import run_egress

    return _run(_command_parser("egress", prog or "cordon egress"), argv, run_egress)


def audit_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon audit verify|tail|export``."""
    from cordon_config.commands.audit import run_audit

    return _run(_command_parser("audit", prog or "cordon audit"), argv, run_audit)


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-config route|listener|secret|token|config|scopes|egress|audit ...``."""
    from cordon_config.commands.audit import run_audit
    from cordon_config.commands.egress import run_egress
    from cordon_config.commands.listener import run_listener
    from cordon_config.commands.route import run_route
    from cordon_config.commands.scopes import run_scopes
    from cordon_config.commands.secret import run_secret
    from cordon_config.commands.token import run_token

    handlers = {"route": run_route, "listener": run_listener, "secret": run_secret, "token": run_token,
                "config": _config_handler, "scopes": run_scopes, "egress": run_egress, "audit": run_audit}
    return _run(build_parser(prog or "cordon-config"), argv, lambda args: handlers[args.command](args))


