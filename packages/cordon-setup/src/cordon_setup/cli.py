"""Command line of cordon-setup: ``setup``, ``integration``, ``env``, ``run`` and ``service``."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cordon_config.argparsing import CordonArgumentParser as _Parser
from cordon_config.files import SymlinkRefused, atomic_write
from cordon_config.scope import (
    ScopeError,
    ScopePaths,
    add_scope_arguments,
    missing_config,
    scope_from_args,
    using_line,
)

from cordon_setup.base import BaseSetupError, read_config_facts, require_token, token_value
from cordon_setup.envfast import CACHE_NAME, cache_text, identity, settled
from cordon_setup.envvars import env_contract, listener_env
from cordon_setup.render import FORMATS, render_env

# The modules behind `setup`, `integration`, `run` and `service` (tomlkit, cryptography, subprocess …) are
# imported inside the commands that use them, so `cordon env` starts fast.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from cordon_config.identity import ProbeResult

    from cordon_setup.integrations import IntegrationPlan
    from cordon_setup.realkeys import Destination, RealKey
    from cordon_setup.setup_flow import SetupOutcome

OK, FAIL, USAGE = 0, 1, 2
_RAW = argparse.RawDescriptionHelpFormatter


class UsageError(Exception):
    """Bad input: printed as one ``cordon: ...`` line (and a hint), exit 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def _err(message: str, hint: str | None = None) -> None:
    sys.stderr.write(f"cordon: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")


def _guarded(fn: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Turn every expected failure into one clear line (never a traceback)."""
    try:
        return fn(args)
    except (UsageError, ScopeError) as exc:
        _err(str(exc), getattr(exc, "hint", None))
        return USAGE
    except BaseSetupError as exc:
        _err(str(exc), exc.hint)
        return FAIL
    except SymlinkRefused as exc:
        _err(str(exc), exc.hint)
        return FAIL
    except OSError as exc:
        from cordon_config.files import os_error_message

        _err(*os_error_message(exc))
        return FAIL
    except KeyboardInterrupt:
        sys.stderr.write("cordon: interrupted\n")
        return 130
    except Exception as exc:
        code = _expected_failure(exc)
        if code is None:
            raise
        _err(str(exc), getattr(exc, "hint", None))
        return code


def _expected_failure(exc: Exception) -> int | None:
    """The exit code for an error of the lazily imported modules, or None for a bug (re-raised)."""
    from cordon_config.tokens import TokenError

    from cordon_setup.apply import ConflictError
    from cordon_setup.edits.json_file import JsonEditError
    from cordon_setup.edits.toml_file import TomlEditError
    from cordon_setup.errors import IntegrationError
    from cordon_setup.runner import RunError
    from cordon_setup.service import ServiceError

    if isinstance(exc, JsonEditError | TomlEditError):
        return USAGE
    if isinstance(exc, RunError):
        return exc.code
    if isinstance(exc, IntegrationError | ServiceError | TokenError | ConflictError):
        return FAIL
    return None


def _paths(args: argparse.Namespace) -> ScopePaths:
    return scope_from_args(args)


def _say_which(paths: ScopePaths) -> None:
    """Name the cordon.toml a state-changing command works on when it was found in a parent directory."""
    line = using_line(paths)
    if line:
        sys.stderr.write(line + "\n")


def _own_scope(args: argparse.Namespace, name: str | None) -> ScopePaths | None:
    """The scope of its own that integration ``name`` uses (Hermes, OpenClaw: ``--scope`` is an error there,
    and ``--config`` must name that file), or None when it follows ``--scope``/``--config`` like the others."""
    from cordon_config.scope import resolve_scope

    from cordon_setup.context import home_dir
    from cordon_setup.integrations import INTEGRATIONS, own_config

    own = own_config(name, home_dir(os.environ)) if name in INTEGRATIONS else None
    if own is None:
        return None
    if args.scope is not None:
        raise UsageError(
            f"{name} is a scope of its own ({own}): drop --scope; later commands take --config {own}"
        )
    if args.config is not None and Path(os.path.abspath(args.config)) != own:
        raise UsageError(f"{name} is a scope of its own: its config is {own}, not {args.config}")
    return resolve_scope(None, own, env=os.environ, cwd=Path.cwd())


def _isatty(stream: object) -> bool:
    return bool(getattr(stream, "isatty", lambda: False)())


# ---- setup ----------------------------------------------------------------------------------------

SETUP_EPILOG = """\
examples:
  cordon setup codex                 CA, cordon.toml, tokens, then .codex/.env and .codex/config.toml here
  cordon setup claude-code --scope user --dry-run
                                     show the diff of ~/.claude/settings.json etc. without writing
  cordon setup hermes                ~/.hermes is its own scope: ~/.hermes/cordon.toml, ~/.hermes/.env, a skill
  cordon setup openclaw              ~/.openclaw/openclaw.json proxy, the CA for its gateway service, a skill
  cordon setup aider --scope user    ~/.env for Aider (gemini-cli and opencode work the same way)
  cordon setup                       only the CA, cordon.toml, the combined bundle and tokens.toml
  cordon setup --port 6801           move this scope's proxy to port 6801 (integration files follow)
  cordon setup --secret-ttl 60 --upstream-ca-file /etc/ssl/corp-root.pem
  cordon setup codex --new-scope     a second scope in this subdirectory of a project
  cordon setup codex --move-keys     also move a real OPENAI_API_KEY in .codex/.env into the keyring
"""


def build_setup_parser(prog: str = "cordon setup") -> _Parser:
    from cordon_setup.integrations import INTEGRATIONS

    parser = _Parser(
        prog=prog,
        description="Create what cordon needs (CA, cordon.toml on a free port, the combined CA bundle, "
        "tokens.toml) and, with INTEGRATION, point that agent at cordon. Safe to run again.",
        epilog=SETUP_EPILOG,
        formatter_class=_RAW,
    )
    parser.add_argument(
        "integration", nargs="?", metavar="INTEGRATION", help=f"one of: {', '.join(INTEGRATIONS)}"
    )
    add_scope_arguments(parser)
    parser.add_argument(
        "-y",
        "--yes",
        action="store_true",
        help="do not ask before changing existing agent files (asked only on a terminal)",
    )
    parser.add_argument(
        "-n", "--dry-run", action="store_true", help="print the diff of every file; write nothing"
    )
    config = parser.add_argument_group("cordon.toml settings (a new file gets them; an existing one is changed)")
    config.add_argument("--port", type=_port, metavar="N",
                        help="the proxy's port on 127.0.0.1 (default for a new scope: the first from 6790 that no "
                        "other cordon scope uses and that is free)")
    config.add_argument("--upstream-ca-file", type=_pem_path, metavar="PATH",
                        help="extra root CAs (PEM) trusted for upstream TLS, added to the system store")
    config.add_argument("--secret-ttl", type=_seconds, metavar="S",
                        help="seconds a fetched secret stays in memory (0: fetch on every request)")
    parser.add_argument(
        "--new-scope", action="store_true",
        help="in a subdirectory of a project that has a cordon.toml, create a second scope here "
        "(asked on a terminal; refused otherwise)",
    )
    parser.add_argument(
        "--move-keys",
        action="store_true",
        help="move real provider keys found in the agent files into the keyring (their route's entry, adding "
        "the provider's usual route when there is none) and write the dummy in their place, without asking "
        "(asked only on a terminal; otherwise setup prints the commands)",
    )
    return parser


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port {value} is not between 1 and 65535")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 <= value <= 86400:
        raise argparse.ArgumentTypeError("must be between 0 and 86400 seconds")
    return value


def _pem_path(text: str) -> Path:
    return Path(text).expanduser().absolute()


def _which_scope(args: argparse.Namespace) -> ScopePaths:
    """The scope setup works on. From a subdirectory of a project with a cordon.toml, creating a second scope
    here is asked first on a terminal (``--new-scope`` says yes) and refused otherwise; ``--config`` or
    ``--scope`` choose without asking."""
    paths = _paths(args)
    if args.config is not None or args.scope == "user" or not paths.found_above:
        return paths
    here = resolve_scope_here(args)
    if args.new_scope:
        return here
    found, cwd = paths.config_path, here.config_path.parent
    if not (_isatty(sys.stdin) and _isatty(sys.stdout)):
        raise UsageError(
            f"{found} (in a parent directory) already covers {cwd}: set up which scope?",
            hint=f"--config {found} for that project, or --new-scope for a second scope in {cwd}",
        )
    sys.stdout.write(
        f"{found} (in a parent directory) already covers {cwd}.\n"
        f"  [p] set up that project's scope\n"
        f"  [n] create a second scope here ({cwd}: its own cordon.toml, CA, port and tokens)\n"
        "  [q] stop\n"
        "Choose [P/n/q] "
    )
    sys.stdout.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer in ("", "p"):
        return paths
    if answer == "n":
        return here
    raise UsageError("nothing was set up", hint=f"--config {found}, or --new-scope")


def resolve_scope_here(args: argparse.Namespace) -> ScopePaths:
    """The project scope of the working directory itself (no discovery)."""
    from cordon_config.scope import resolve_scope

    return resolve_scope(args.scope, None, env=os.environ, cwd=Path.cwd(), discover=False)


def _confirm_on_tty(plan: IntegrationPlan, masks: dict[str, str]) -> bool:
    from cordon_setup.plan import render_plan

    sys.stdout.write(render_plan(plan.changes, masks))
    sys.stdout.write("Change these files? (originals are backed up as <name>.cordon.bak) [Y/n] ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:  # EOF (Ctrl-D): no
        sys.stdout.write("\n")
        return False
    return line.strip().lower() in ("", "y", "yes")


def _ask_move_key(key: RealKey, where: Destination) -> bool:
    """On a terminal: move this key into cordon? (default yes; the value is never shown)."""
    route = f"route {where.route}" + (", which setup adds and approves" if where.new else "")
    sys.stdout.write(f"{key.path} holds a real {key.variable}, which the agent can read. Move it into the keyring "
                     f"({where.service}/{where.account}, {route}) and write the dummy in its place? [Y/n] ")
    sys.stdout.flush()
    line = sys.stdin.readline()
    if not line:
        sys.stdout.write("\n")
        return False
    return line.strip().lower() in ("", "y", "yes")


def _move_without_asking(key: RealKey, where: Destination) -> bool:
    return True


def _print_setup(outcome: SetupOutcome) -> None:
    from cordon_setup.plan import render_plan
    from cordon_setup.setup_flow import describe

    paths = outcome.paths
    if outcome.dry_run:
        for line in outcome.key_warnings:
            sys.stderr.write(line + "\n")
        for item in outcome.base:
            if isinstance(item, str):
                print(item)
        changes = [c for c in outcome.base if not isinstance(c, str)]
        if outcome.plan is not None:
            changes += outcome.plan.all_changes  # the agent files and the manifest recording them
        diff = render_plan(changes, outcome.masks)
        sys.stdout.write(diff)
        if not outcome.changed:
            print("nothing to change (dry run)")
        else:
            print("dry run: nothing was written")
        return
    for line in outcome.key_notes:
        print(line)
    for line in outcome.key_warnings:
        sys.stderr.write(line + "\n")
    if outcome.declined:
        print("nothing written to the agent files")
        return
    for line in describe(outcome):
        print(line)
    for line in outcome.notes:
        print(line)
    if not outcome.changed:
        what = f"cordon and {outcome.integration} are" if outcome.integration else "cordon is"
        print(f"nothing to change: {what} already set up ({paths.scope} scope, {paths.config_path})")
    for line in outcome.unapproved:
        print(f"note: {line}")
    if outcome.next_steps:
        print("\nnext steps:")
        for number, step in enumerate(outcome.next_steps, start=1):
            print(f"  {number}. {step}")


def _check_upstream_ca_file(path: Path) -> None:
    """UsageError unless ``--upstream-ca-file`` is a readable file holding a PEM certificate."""
    from cordon_config.pem import no_certificate_message

    if not path.is_file():
        raise UsageError(f"--upstream-ca-file: no such file: {path}")
    try:
        problem = no_certificate_message(path, path.read_bytes())
    except OSError as exc:
        problem = f"cannot read {path}: {exc.strerror or exc}"
    if problem is not None:
        raise UsageError(f"--upstream-ca-file: {problem}")


def _setup(args: argparse.Namespace) -> int:
    from cordon_setup.integrations import INTEGRATIONS
    from cordon_setup.setup_flow import run_setup

    if args.integration is not None and args.integration not in INTEGRATIONS:
        raise UsageError(
            f"unknown integration {args.integration!r}; choose one of: {', '.join(INTEGRATIONS)}"
        )
    if args.upstream_ca_file is not None:
        _check_upstream_ca_file(args.upstream_ca_file)
    paths = _own_scope(args, args.integration) or _which_scope(args)
    _say_which(paths)
    confirm = move_key = None
    if not args.yes and not args.dry_run and _isatty(sys.stdin) and _isatty(sys.stdout):
        confirm, move_key = _confirm_on_tty, _ask_move_key
    if args.move_keys:
        move_key = _move_without_asking
    outcome = run_setup(
        paths,
        args.integration,
        environ=os.environ,
        cwd=Path.cwd(),
        dry_run=args.dry_run,
        confirm=confirm,
        progress=(lambda line: None) if args.dry_run else print,
        port=args.port,
        upstream_ca_file=args.upstream_ca_file,
        secret_ttl=args.secret_ttl,
        move_key=move_key,
    )
    _print_setup(outcome)
    return FAIL if outcome.declined else OK


def setup_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon setup [INTEGRATION] [--scope|--config] [--yes] [--dry-run]``."""
    args = build_setup_parser(prog or "cordon setup").parse_args(argv)
    return _guarded(_setup, args)


# ---- integration ----------------------------------------------------------------------------------

INTEGRATION_EPILOG = """\
examples:
  cordon integration disable codex            remove what `cordon setup codex` wrote here
  cordon integration list --scope user        integrations set up in the user scope
"""


def build_integration_parser(prog: str = "cordon integration") -> _Parser:
    from cordon_setup.integrations import INTEGRATIONS

    parser = _Parser(
        prog=prog,
        description="Inspect or remove agent integrations made by `cordon setup`.",
        epilog=INTEGRATION_EPILOG,
        formatter_class=_RAW,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    dis = sub.add_parser(
        "disable",
        help="remove exactly what setup wrote and revoke the client token",
        description="Remove the keys, hook and skill that setup wrote (values you changed since are left "
        "alone and reported), restore the original bytes where nothing else changed, and revoke the "
        "integration's proxy token.",
        epilog="examples:\n  cordon integration disable codex\n  cordon integration disable claude-code --scope user\n"
        "  cordon integration disable codex --dry-run   show what would be removed\n",
        formatter_class=_RAW,
    )
    dis.add_argument("name", metavar="NAME", help=f"one of: {', '.join(INTEGRATIONS)}")
    add_scope_arguments(dis)
    dis.add_argument("-n", "--dry-run", action="store_true", help="print the diff; write nothing")
    lst = sub.add_parser(
        "list",
        help="integrations set up in this scope",
        description="List the agent integrations `cordon setup` wrote in this scope.",
        epilog="examples:\n  cordon integration list\n  cordon integration list --scope user --json\n",
        formatter_class=_RAW,
    )
    add_scope_arguments(lst)
    lst.add_argument("--json", action="store_true", help="print a JSON array")
    return parser


def _integration(args: argparse.Namespace) -> int:
    from cordon_setup.base import revoke_token
    from cordon_setup.integrations import INTEGRATIONS, disable, installed, plan_disable
    from cordon_setup.plan import render_plan

    paths = _own_scope(args, getattr(args, "name", None)) or _paths(args)
    if args.action == "list":
        names = installed(paths)
        if args.json:
            print(json.dumps(names))
        else:
            print("\n".join(names) if names else f"no integrations set up ({paths.scope} scope)")
        return OK
    if args.name not in INTEGRATIONS:
        raise UsageError(f"unknown integration {args.name!r}; choose one of: {', '.join(INTEGRATIONS)}")
    if args.dry_run:
        report, _ = plan_disable(paths, args.name)
        token = token_value(paths, args.name)
        sys.stdout.write(render_plan(report.changes, {token: f"<token:{args.name}>"} if token else None))
        for line in report.left_alone:
            print(f"would leave alone: {line}")
        print("dry run: nothing was written")
        return OK
    _say_which(paths)
    report = disable(paths, args.name, revoke=revoke_token)
    for change in report.changes:
        if change.summary or not change.changed:
            continue
        print(f"{'removed' if change.after is None else 'restored'} {change.path}")
    for line in report.left_alone:
        print(f"left alone: {line}")
    for line in report.notes:
        print(line)
    if report.token_revoked:
        print(f"revoked the proxy token '{args.name}'")
    print(f"{args.name} integration disabled")
    return OK


def integration_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon integration disable NAME`` / ``cordon integration list``."""
    args = build_integration_parser(prog or "cordon integration").parse_args(argv)
    return _guarded(_integration, args)


# ---- env ------------------------------------------------------------------------------------------

ENV_EPILOG = """\
examples:
  eval "$(cordon env)"                        send this shell's tools through cordon
  cordon env --format fish | source           the same in fish
  cordon env --format dotenv > .env           for tools that read a dotenv file
  eval "$(cordon env --listener prod-db)"     PGHOST/PGPORT/PGUSER (+ PGPASSWORD = a proxy token) for psql & co
"""


def build_env_parser(prog: str = "cordon env") -> _Parser:
    parser = _Parser(
        prog=prog,
        description="Print the proxy and CA variables (the env contract) for this scope.",
        epilog=ENV_EPILOG,
        formatter_class=_RAW,
    )
    add_scope_arguments(parser)
    parser.add_argument(
        "-f", "--format", choices=FORMATS, default="shell", help="output format (default shell)"
    )
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument(
        "--token", default="default", metavar="NAME", help="proxy token to embed (default: default)"
    )
    parser.add_argument(
        "--listener", metavar="NAME", help="print a PostgreSQL listener's client variables instead: PGHOST, "
        "PGPORT, PGUSER and, when tokens are on, the proxy token as PGPASSWORD",
    )
    return parser


def scope_env(paths: ScopePaths, token_name: str = "default") -> dict[str, str]:
    """The env contract of a scope: port, CA and routed hosts from its cordon.toml, the named token from
    tokens.toml (an error naming the fix when it is missing: never a URL without a token).

    The scope's copy of the Node register hook is refreshed when the state directory exists; where it cannot
    be, ``NODE_OPTIONS`` is left out (a ``--require`` of a missing file would stop every Node program)."""
    from cordon_setup.nodehook import ensure_hook, hook_path

    facts = read_config_facts(paths)
    if facts is None:
        raise BaseSetupError(*missing_config(paths))
    token = require_token(paths, token_name)
    env = env_contract(paths, facts.listen, token, ca_cert=facts.ca_cert, routed_hosts=facts.routes)
    if paths.state_dir.is_dir():
        with contextlib.suppress(OSError):
            ensure_hook(paths)
    if not hook_path(paths).is_file():
        env.pop("NODE_OPTIONS", None)
    return env


def listener_scope_env(paths: ScopePaths, name: str, token_name: str = "default") -> dict[str, str]:
    """The client variables of listener ``name``: its port and user from cordon.toml, and the named proxy token
    when tokens are on (with no tokens.toml a listener asks clients for no password, so none is printed)."""
    facts = read_config_facts(paths)
    if facts is None:
        raise BaseSetupError(*missing_config(paths))
    if name not in facts.listeners:
        known = ", ".join(sorted(facts.listeners)) or "none"
        raise BaseSetupError(f"no listener named {name!r} in {paths.config_path}",
                             f"listeners: {known} (add one with `cordon listener add{paths.flag}`)")
    port, username = facts.listeners[name]
    token = require_token(paths, token_name) if paths.tokens_path.exists() else None
    return listener_env(port, username, token)


def _env(args: argparse.Namespace) -> int:
    paths = _paths(args)
    # identities first: a file changed while it is being read leaves a cache that no longer matches
    config_id, tokens_id = identity(str(paths.config_path)), identity(str(paths.tokens_path))
    if args.listener is not None:
        sys.stdout.write(render_env(listener_scope_env(paths, args.listener, args.token),
                                    "json" if args.json else args.format))
        return OK
    env = scope_env(paths, args.token)
    sys.stdout.write(render_env(env, "json" if args.json else args.format))
    save_env_cache(paths, args.token, config_id, tokens_id, env)
    return OK


def save_env_cache(paths: ScopePaths, token: str, config_id: str, tokens_id: str, env: dict[str, str]) -> None:
    """Best effort: let the next ``cordon env`` print ``env`` without reading TOML (see :mod:`envfast`).

    Only into the scope's existing state directory (``cordon setup`` makes it; a read command creates
    nothing); 0600 like tokens.toml, whose token the proxy URL carries; not when either file changed in the
    last :data:`~cordon_setup.envfast.RACY_SECONDS`; a failure to write only costs the next call its speed.
    """
    if not paths.state_dir.is_dir():
        return
    now = time.time()
    if not (settled(config_id, now) and settled(tokens_id, now)):
        return
    text = cache_text(str(paths.config_path), token, config_id, tokens_id, env)
    if text is None:
        return
    target = paths.state_dir / CACHE_NAME
    with contextlib.suppress(OSError):
        st = target.stat()
        if st.st_uid == os.geteuid() and not st.st_mode & 0o077 and target.read_text(encoding="utf-8") == text:
            return  # unchanged (e.g. `--json`, which always takes this path): no rewrite, no fsync
    with contextlib.suppress(OSError):
        atomic_write(target, text, mode=0o600)


def env_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon env [--format shell|fish|dotenv|json]``."""
    args = build_env_parser(prog or "cordon env").parse_args(argv)
    return _guarded(_env, args)


# ---- run ------------------------------------------------------------------------------------------

RUN_EPILOG = """\
examples:
  cordon run -- gemini                        any agent, through this project's cordon
  cordon run --scope user -- opencode run "fix the tests"
"""


def build_run_parser(prog: str = "cordon run") -> _Parser:
    parser = _Parser(
        prog=prog,
        description="Run CMD with the env contract applied. If no proxy is healthy for this config, one is "
        "started for the command's lifetime and stopped after. The exit code is CMD's.",
        epilog=RUN_EPILOG,
        formatter_class=_RAW,
    )
    add_scope_arguments(parser)
    parser.add_argument(
        "--token", default="default", metavar="NAME", help="proxy token to use (default: default)"
    )
    parser.add_argument(
        "command", nargs=argparse.REMAINDER, metavar="-- CMD [ARGS...]", help="the command to run"
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    from cordon_config.hardening import set_not_dumpable

    from cordon_setup.runner import run_with_proxy

    # this process keeps the caller's environment (the secrets the proxy it starts reads): the command, the
    # same user, must not read it from /proc/<pid>/environ or memory (the command is dumpable again at exec)
    set_not_dumpable()

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command given; usage: cordon run [--scope|--config] -- CMD [ARGS...]")
    paths = _paths(args)
    env = scope_env(paths, args.token)
    facts = read_config_facts(paths)
    assert facts is not None
    from cordon_config.scopes import default_log

    return run_with_proxy(
        command,
        env_contract=env,
        paths=paths,
        port=facts.listen,
        log_path=default_log(paths),
        notify=lambda line: sys.stderr.write(line + "\n"),  # names only, never a value
    )


def run_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon run [--scope|--config] -- CMD [ARGS...]``."""
    args = build_run_parser(prog or "cordon run").parse_args(argv)
    return _guarded(_run, args)


# ---- service --------------------------------------------------------------------------------------

SERVICE_EPILOG = """\
examples:
  cordon service install                      run this project's proxy in the background (systemd/launchd)
  cordon service install --dry-run            print the unit file and where it would go; change nothing
  cordon service restart                      after editing cordon.toml
  cordon service status --scope user --json
  cordon logs -f                              the service's log
"""


def build_service_parser(prog: str = "cordon service") -> _Parser:
    parser = _Parser(
        prog=prog,
        description="Run the proxy as a background service: a systemd user unit on Linux, a launchd agent on "
        "macOS, started at login and restarted on failure.",
        epilog=SERVICE_EPILOG,
        formatter_class=_RAW,
    )
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=_Parser)
    actions = (
        ("install", "write the unit (or plist) and start the proxy now and at every login",
         "examples:\n  cordon service install\n  cordon service install --dry-run     print the unit and its path\n"
         "  cordon service install --scope user\n"),
        ("uninstall", "stop the service and remove its unit",
         "examples:\n  cordon service uninstall\n  cordon service uninstall --scope user\n"),
        ("restart", "restart the service (it re-reads cordon.toml, secrets and the CA)",
         "examples:\n  cordon service restart\n  cordon service restart --scope user\n"),
        ("status", "is the service installed and running? (exit 1 when installed but not running)",
         "examples:\n  cordon service status\n  cordon service status --scope user --json\n"),
    )
    for name, summary, epilog in actions:
        action = sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".",
                                epilog=epilog, formatter_class=_RAW)
        action.add_argument("name", nargs="?", metavar="NAME", help="service name (default: cordon-<namespace>)")
        add_scope_arguments(action)
        if name == "status":
            action.add_argument("--json", action="store_true", help="print JSON")
        if name == "install":
            action.add_argument("-n", "--dry-run", action="store_true",
                                help="print the unit file (or plist) and its path; write and start nothing")
    return parser


def _service(args: argparse.Namespace) -> int:
    from cordon_setup.context import cordon_argv
    from cordon_setup.service import ServiceManager

    paths = _paths(args)
    manager = ServiceManager(paths, cordon=cordon_argv())
    if args.action == "install" and args.dry_run:
        if not paths.config_path.exists():
            raise BaseSetupError(*missing_config(paths))
        print(f"# {manager.unit_path(args.name)}  (dry run: nothing written or started)")
        sys.stdout.write(manager.render(args.name).decode("utf-8"))
        return OK
    if args.action != "status":
        _say_which(paths)
    if args.action == "install":
        path = manager.install(args.name)
        print(f"installed and started {manager.unit_name(args.name)} ({path})")
        print(f"logs: cordon logs -f{paths.flag}   ({manager.log_path(args.name)})")
        return OK
    if args.action == "restart":
        manager.restart(args.name)
        print(f"restarted {manager.unit_name(args.name)}")
        return OK
    if args.action == "uninstall":
        if manager.uninstall(args.name):
            print(f"stopped and removed {manager.unit_name(args.name)}")
        else:
            print(f"{manager.unit_name(args.name)} is not installed")
        return OK
    status = manager.status(args.name)
    proxy = _proxy_state(paths)
    if args.json:
        print(
            json.dumps(
                {
                    "name": status.name,
                    "manager": status.kind,
                    "path": str(status.path),
                    "installed": status.installed,
                    "running": status.running,
                    "proxy": proxy.kind if proxy is not None else None,
                    "pid": proxy.pid if proxy is not None else None,
                }
            )
        )
    else:
        state = (
            "not installed"
            if not status.installed
            else ("running" if status.running else "installed, not running")
        )
        print(f"{manager.unit_name(args.name)}: {state}")
        if proxy is not None:
            print(f"proxy: {proxy.message()}")
    serving = proxy is None or proxy.ours
    return OK if (status.running and serving) or not status.installed else FAIL


def _proxy_state(paths: ScopePaths) -> ProbeResult | None:
    """What holds the scope's port, proven by the identity key (None when the config cannot be read)."""
    from cordon_config.identity import IdentityError, probe

    try:
        facts = read_config_facts(paths)
    except BaseSetupError:
        return None
    if facts is None:
        return None
    try:
        return probe(paths, facts.listen)
    except IdentityError:
        return None


def service_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon service install|uninstall|status [NAME]``."""
    args = build_service_parser(prog or "cordon service").parse_args(argv)
    return _guarded(_service, args)


# ---- cordon-setup (all of the above) --------------------------------------------------------------

COMMANDS: dict[str, Callable[..., int]] = {
    "setup": setup_main,
    "integration": integration_main,
    "env": env_main,
    "run": run_main,
    "service": service_main,
}


def build_parser(prog: str = "cordon-setup") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="cordon-setup: wire agents up to cordon (setup, integration, env, run, service).",
        epilog="examples:\n  cordon-setup setup codex\n  cordon-setup env --format json\n",
        formatter_class=_RAW,
    )
    parser.add_argument("command", choices=sorted(COMMANDS), help="the command (see `COMMAND --help`)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser


PARSERS: dict[str, Callable[[str], _Parser]] = {
    "setup": build_setup_parser,
    "integration": build_integration_parser,
    "env": build_env_parser,
    "run": build_run_parser,
    "service": build_service_parser,
}


def build_manpage_parser(prog: str = "cordon-setup") -> argparse.ArgumentParser:
    """:func:`build_parser` with every command's own parser as a subcommand, for the man page (the CLI itself
    hands the arguments to the command's parser, so that ``cordon-setup X`` and ``cordon X`` are the same)."""
    parser = _Parser(prog=prog, description=build_parser(prog).description, epilog=build_parser(prog).epilog,
                     formatter_class=_RAW)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, build in PARSERS.items():
        own = build(f"{prog} {name}")
        sub.add_parser(name, parents=[own], add_help=False, help=own.description, description=own.description,
                       epilog=own.epilog, formatter_class=_RAW)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-setup COMMAND [ARGS...]``."""
    name = prog or "cordon-setup"
    args = build_parser(name).parse_args(argv)
    return COMMANDS[args.command](args.args, prog=f"{name} {args.command}")
