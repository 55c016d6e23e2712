"""Command line of cordon-proxy: ``cordon start``, ``cordon status``, ``cordon wait``.

``start`` runs the proxy in the foreground in the order of spec §3: load and validate the config → refuse
anything not approved (:mod:`cordon_config.approvals`) → check every secret (all failures reported together) → load the CA (created when missing) → bind
127.0.0.1:<listen> → serve. SIGINT/SIGTERM let in-flight requests finish (up to 10 s), then exit 0.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from cordon_config.argparsing import CordonArgumentParser as _Parser

from cordon_proxy import __version__
from cordon_proxy.logfile import LOGS_EPILOG, add_logs_arguments

if TYPE_CHECKING:
    from cordon_config import Config
    from cordon_config.scope import ScopePaths

    from cordon_proxy.audit import AuditLog
    from cordon_proxy.logs import Logger
    from cordon_proxy.tls import LeafContexts

__all__ = ["build_parser", "main", "start_main", "status_main", "wait_main"]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

START_EPILOG = """examples:
  cordon start                          # project scope: the nearest cordon.toml here or above
  cordon start --scope user --log-format json --log-level debug
  cordon start --log-file ~/cordon.log  # log there (0600, appended; `cordon logs` finds it)
"""
STATUS_EPILOG = """examples:
  cordon status
  cordon status --quiet || echo "cordon is not running"
"""
WAIT_EPILOG = """examples:
  cordon wait --timeout 5 && cordon run -- codex     use the proxy once it answers
  cordon wait --config ./cordon.toml
"""


def _fail(message: str, hint: str | None = None, code: int = EXIT_FAIL) -> int:
    sys.stderr.write(f"cordon: {message}\n")
    if hint:
        sys.stderr.write(f"hint: {hint}\n")
    return code


def _add_scope(parser: argparse.ArgumentParser) -> None:
    from cordon_config.scope import add_scope_arguments

    add_scope_arguments(parser)


def _start_arguments(parser: argparse.ArgumentParser) -> None:
    _add_scope(parser)
    parser.add_argument(
        "--log-level", choices=["trace", "debug", "info", "warn", "error"], default="info",
        help="least severe log level written to stderr (default: info)",
    )
    parser.add_argument(
        "--log-format", choices=["text", "json"], default="text", help="log line format (default: text)"
    )
    parser.add_argument(
        "--log-file", metavar="PATH", type=Path,
        help="write the log to PATH (0600, appended) instead of stderr; errors go to both",
    )


def _status_arguments(parser: argparse.ArgumentParser) -> None:
    _add_scope(parser)
    out = parser.add_mutually_exclusive_group()
    out.add_argument("-q", "--quiet", action="store_true", help="print nothing; exit 0 when running, 1 when not")
    out.add_argument("--json", action="store_true", help="print one JSON object")


def _wait_arguments(parser: argparse.ArgumentParser) -> None:
    _add_scope(parser)
    parser.add_argument(
        "--timeout", type=float, default=10.0, metavar="S", help="give up after S seconds (default: 10)"
    )


TOOL_EPILOG = """\
examples:
  cordon-proxy start                       the proxy for ./cordon.toml, in the foreground (= cordon start)
  cordon-proxy start --scope user --log-format json
  cordon-proxy status --json               is it running, on which port, with how many routes
  cordon-proxy wait --timeout 5            exit 0 once /health answers
  cordon-proxy logs -f                     follow the scope's proxy log
"""


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``cordon-proxy`` parser with the start, status and wait subcommands."""
    parser = _Parser(
        prog=prog or "cordon-proxy", description="The cordon credential-injecting proxy.",
        epilog=TOOL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, helptext, epilog, adder in (
        ("start", "run the proxy in the foreground", START_EPILOG, _start_arguments),
        ("status", "say whether the proxy is running (via /health)", STATUS_EPILOG, _status_arguments),
        ("wait", "wait until the proxy answers /health", WAIT_EPILOG, _wait_arguments),
        ("logs", "show (or follow) this scope's proxy log", LOGS_EPILOG, add_logs_arguments),
    ):
        p = sub.add_parser(
            name, help=helptext, description=helptext[0].upper() + helptext[1:] + ".", epilog=epilog,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        adder(p)
    return parser


def _single_parser(
    prog: str, description: str, epilog: str, adder: Callable[[argparse.ArgumentParser], None]
) -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    adder(parser)
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-proxy start|status|wait ...``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    from cordon_proxy.logfile import logs_main

    commands: dict[str, Callable[..., int]] = {"start": start_main, "status": status_main, "wait": wait_main, "logs": logs_main}
    if not args_list or args_list[0] not in commands:
        parser.parse_args(args_list)  # --help, --version or a usage error
        return EXIT_USAGE
    command, rest = args_list[0], args_list[1:]
    name = f"{prog or 'cordon-proxy'} {command}"
    return commands[command](rest, prog=name)


# -- shared ----------------------------------------------------------------------------------------------


def _scope(args: argparse.Namespace) -> ScopePaths:
    from cordon_config.scope import ScopeError, scope_from_args

    try:
        return scope_from_args(args)
    except ScopeError as exc:
        raise _Usage(str(exc)) from None


class _Usage(Exception):
    def __init__(self, message: str, hint: str | None = None, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.hint, self.code = hint, code


def _load(config_path: Path) -> Config:
    from cordon_config import load_config

    return load_config(config_path)


# -- start -----------------------------------------------------------------------------------------------


def start_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon start``: run the proxy in the foreground until SIGINT/SIGTERM."""
    parser = _single_parser(prog or "cordon start", "Run the proxy in the foreground.", START_EPILOG, _start_arguments)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    from cordon_config import ConfigError
    from cordon_config.secrets import check_secrets

    from cordon_proxy.logs import Logger

    logger = Logger(args.log_level, args.log_format)
    if args.log_file is not None:
        try:
            _log_to_file(logger, args.log_file)
        except OSError as exc:
            from cordon_config.files import os_error_message

            return _fail(*os_error_message(exc))
    from cordon_proxy.hardening import harden_process

    hardened = harden_process()  # before any secret is loaded: no core dumps, no ptrace by peers
    logger.log("debug", "process hardening", **{k: str(v) for k, v in hardened.items()})
    try:
        paths = _scope(args)
    except _Usage as exc:
        return _fail(str(exc), code=EXIT_USAGE)
    config_path = paths.config_path
    # 1. config
    try:
        config = _load(config_path)
    except ConfigError as exc:
        from cordon_config.errors import ConfigNotFound
        from cordon_config.scope import missing_config

        if isinstance(exc, ConfigNotFound):
            return _fail(*missing_config(paths))
        sys.stderr.write("cordon: " + str(exc).rstrip("\n") + "\n")
        return EXIT_FAIL
    except OSError as exc:
        return _fail(f"cannot read {config_path}: {exc.strerror}")
    _record(paths, args.log_file)
    # 2. approval: nothing a human did not approve is fetched, run or routed (docs/security.md)
    from cordon_config.approvals import check_approved, refusal_lines

    unapproved = check_approved(config, paths)
    if unapproved:
        for line in refusal_lines(unapproved, paths):
            sys.stderr.write(f"cordon: {line}\n")
        return EXIT_FAIL
    # 3. secrets
    failures = check_secrets(config)
    if failures:
        from cordon_proxy.core.errors import secret_unavailable

        for route_name, reason in failures:
            sys.stderr.write(f"cordon: {secret_unavailable(route_name, reason)}\n")
        sys.stderr.write(f"hint: fix each as its line says, then check with: cordon secret check{paths.flag}\n")
        return EXIT_FAIL
    # 4. CA
    leaves: LeafContexts | None = None
    if config.tls.enabled and config.routes:
        from cordon_ca import CAError, ensure_scope_ca, permitted_for

        from cordon_proxy.tls import LeafContexts

        cert = config.tls.ca_cert_path or paths.ca_cert
        key = config.tls.ca_key_path or paths.ca_key
        permitted = permitted_for(config.tls.name_constraints, (r.host for r in config.routes))
        existed = cert.exists() and key.exists()
        if not existed and paths.combined_bundle.exists():
            from cordon_config.scope import with_scope_flag

            return _fail(  # clients trust the CA in the bundle: a new one would break them without a clue
                f"the CA of this scope is gone ({cert if not cert.exists() else key} is missing), but its "
                f"combined bundle still holds the old one that clients trust",
                with_scope_flag("create a new CA deliberately: cordon ca generate --force, then cordon setup "
                                "(rewrites the bundle and the agents' files) and restart the agents", paths),
            )
        try:
            ca, written = ensure_scope_ca(cert, key, namespace=paths.namespace, permitted_hosts=permitted,
                                          bundle=paths.combined_bundle,
                                          keep_unconstrained=config.tls.name_constraints is None)
        except CAError as exc:
            hint = getattr(exc, "hint", None)
            return _fail(str(getattr(exc, "message", exc)), hint)
        except OSError as exc:
            return _fail(f"cannot prepare the CA: {exc.filename or cert}: {exc.strerror or exc}")
        if written and existed:
            what = "name-constrained CA for the routed hosts" if permitted is not None else (
                "CA without name constraints")
            logger.log("warn", f"re-issued the {what} (the old key is destroyed): {cert}")
        elif written:
            logger.log("warn", f"created the cordon CA {cert}: clients must trust it (cordon setup writes the bundle)")
        leaves = LeafContexts(ca, [r.host for r in config.routes])
    # 5. tokens
    verify: Verifier | None = None
    from cordon_config.tokens import TokenStore

    try:
        store = TokenStore.load(paths.tokens_path)
    except Exception as exc:  # unreadable or insecure tokens file: refuse to run without the user knowing
        return _fail(f"cannot load proxy tokens: {exc}")
    if store is None:
        logger.log("warn", f"no proxy tokens ({paths.tokens_path} is absent): any local process may use the routes")
    else:
        from cordon_proxy.tokens import TokenGate

        verify = TokenGate(paths.tokens_path, paths.namespace, store).verify

    # 5. audit log
    audit: AuditLog | None = None
    if config.audit.enabled:
        from cordon_config.audit import AuditError

        from cordon_proxy.audit import AuditLog

        try:
            audit = AuditLog(paths.state_dir, paths.namespace, config.audit, logger)
        except AuditError as exc:
            return _fail(exc.message, exc.hint)
        except OSError as exc:
            return _fail(f"cannot open the audit log in {paths.state_dir}: {exc.strerror or exc}",
                         "run cordon as the user who owns the state dir, or set enabled = false under [audit]")
    return _serve(config, leaves, verify, logger, audit)


Verifier = Callable[[str], "str | None"]


def _log_to_file(logger: Logger, path: Path) -> None:
    """Send the log to ``path`` (and the ``cordon: …`` error lines to stderr as well)."""
    from cordon_proxy.logfile import Tee, open_log, same_file

    log = open_log(path)
    logger.stream = log
    if not same_file(sys.stderr, log):
        sys.stderr = Tee(sys.stderr, log)


def _record(paths: ScopePaths, log_file: Path | None) -> None:
    """Record the scope (and where it logs) in its state dir, for `cordon scopes`, ports and `cordon logs`."""
    from cordon_config.scopes import record_log, record_scope

    try:
        if log_file is not None:
            record_log(paths, log_file.absolute())
        else:
            record_scope(paths)
    except OSError:
        pass  # a read-only state dir must not stop the proxy; `cordon doctor` reports it


def _event_loop() -> tuple[str, Callable[[Coroutine[object, object, int]], int]]:
    """("uvloop", uvloop.run) when uvloop (the optional ``uvloop`` extra) imports, else the stdlib loop."""
    import asyncio  # here, not at the top: `cordon status` and `wait` never run a loop (start-up time)

    try:
        import uvloop
    except ImportError:
        return "asyncio", asyncio.run
    return "uvloop", uvloop.run


def _serve(config: Config, leaves: LeafContexts | None, verify: Verifier | None, logger: Logger,
           audit: AuditLog | None) -> int:
    name, run = _event_loop()
    logger.log("info", f"event loop: {name}")
    return run(_run(config, leaves, verify, logger, audit))


async def _run(config: Config, leaves: LeafContexts | None, verify: Verifier | None, logger: Logger,
               audit: AuditLog | None) -> int:
    import asyncio

    from cordon_config.secrets import SecretCache

    from cordon_proxy.core.session import Settings, SettingsRef
    from cordon_proxy.server import Proxy, allow_loopback, loop_exception_handler
    from cordon_proxy.upstream import Resolver, UpstreamPool, client_context, resolve_overrides

    try:
        ctx = client_context(config.tls.upstream_ca_file)
    except (OSError, ValueError) as exc:
        return _fail(f"cannot load [tls] upstream_ca_file {config.tls.upstream_ca_file}: {exc}")
    settings = Settings.from_config(
        config, version=__version__, verify_token=verify, allow_loopback=allow_loopback(os.environ)
    )
    pool = UpstreamPool(
        ctx,
        Resolver(resolve_overrides(os.environ)),
        connect_timeout=config.limits.connect_timeout,
        idle_timeout=min(30.0, config.limits.idle_timeout),
    )
    proxy = Proxy(SettingsRef(settings, clock=time.monotonic), leaves=leaves, pool=pool,
                  secrets=SecretCache(config.secret_ttl), logger=logger, audit=audit)
    if audit is not None:
        audit.event("start", version=__version__, pid=os.getpid(), config=str(config.path))
    try:
        await proxy.listen(config.listen)
    except OSError as exc:
        if audit is not None:
            audit.close()
        if exc.errno == errno.EADDRINUSE:
            return _fail(
                f"port {config.listen} on 127.0.0.1 is already in use",
                f"stop what is using it (cordon status), or change `listen` in {config.path}",
            )
        return _fail(f"cannot listen on 127.0.0.1:{config.listen}: {exc.strerror}")
    from cordon_proxy.hardening import release_startup_memory

    release_startup_memory()
    stop, now = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:  # the first asks to drain; a second one (Ctrl-C again) stops at once
        (now if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(logger))
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    logger.log(
        "info", f"cordon {__version__} listening on 127.0.0.1:{config.listen}",
        routes=len(config.routes), config=str(config.path),
        loop="uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
    )
    await stop.wait()
    logger.log("info", "stopping: letting in-flight requests finish (up to 10 s; Ctrl-C again stops now)")
    from cordon_proxy._tasks import spawn

    if audit is not None:
        audit.event("stop")

    drain, interrupt = spawn(proxy.shutdown()), spawn(now.wait())
    await asyncio.wait((drain, interrupt), return_when=asyncio.FIRST_COMPLETED)
    interrupt.cancel()
    if not drain.done():
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await drain
        if audit is not None:
            audit.close()  # what shutdown would have done last
        logger.log("warn", "stopped without waiting for in-flight requests (second interrupt)")
        return EXIT_FAIL
    logger.log("info", "stopped")
    return EXIT_OK


# -- status / wait -------------------------------------------------------------------------------------


def health(port: int, timeout: float = 2.0) -> dict[str, object] | None:
    """The proxy's /health answer on 127.0.0.1:``port``, or None when nothing healthy answers."""
    import http.client  # only status/wait need it; the running proxy never does (idle memory)

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/health", headers={"Host": f"127.0.0.1:{port}"})
        response = conn.getresponse()
        body = response.read(65536)
        if response.status != 200:
            return None
        data = json.loads(body)
        return data if isinstance(data, dict) and data.get("status") == "ok" else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def _config_for_status(args: argparse.Namespace) -> tuple[Path, int]:
    from cordon_config import ConfigError
    from cordon_config.errors import ConfigNotFound
    from cordon_config.quickscope import file_identity
    from cordon_config.scope import missing_config

    from cordon_proxy.statusfast import save_cache

    paths = _scope(args)
    config_path = paths.config_path
    config_id = file_identity(str(config_path))  # before reading: an edit meanwhile leaves a cache that misses
    try:
        config = _load(config_path)
    except ConfigNotFound:
        raise _Usage(*missing_config(paths), code=EXIT_FAIL) from None  # the one "no cordon.toml" of every tool
    except ConfigError as exc:
        raise _Usage(str(exc).splitlines()[0] if str(exc) else "invalid config") from None
    except OSError as exc:
        raise _Usage(f"cannot read {config_path}: {exc.strerror}") from None
    save_cache(str(config_path), str(paths.state_dir), config_id, config.listen, time.time())  # the fast path's
    return config_path, config.listen


def status_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon status``: running or not (via /health), port, config, routes."""
    parser = _single_parser(
        prog or "cordon status", "Say whether the proxy is running (via /health).", STATUS_EPILOG, _status_arguments
    )
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    try:
        config_path, port = _config_for_status(args)
    except _Usage as exc:
        if args.quiet:
            return EXIT_FAIL
        return _fail(str(exc), exc.hint, code=exc.code)
    answer = health(port)
    running = answer is not None
    if args.quiet:
        return EXIT_OK if running else EXIT_FAIL
    if args.json:
        data = {
            "running": running,
            "port": port,
            "config": str(config_path),
            "routes": answer.get("routes") if answer else None,
            "version": answer.get("version") if answer else None,
        }
        sys.stdout.write(json.dumps(data) + "\n")
    elif running:
        assert answer is not None
        routes = answer.get("routes")
        sys.stdout.write(
            f"cordon is running on 127.0.0.1:{port} (version {answer.get('version')}, "
            f"{routes} route{'' if routes == 1 else 's'})\nconfig: {config_path}\n"
        )
    else:
        sys.stdout.write(f"cordon is not running on 127.0.0.1:{port}\nconfig: {config_path}\nhint: cordon start\n")
    return EXIT_OK if running else EXIT_FAIL


def wait_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon wait``: poll /health until it answers (exit 0) or the timeout passes (exit 1)."""
    parser = _single_parser(prog or "cordon wait", "Wait until the proxy answers /health.", WAIT_EPILOG, _wait_arguments)
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.timeout < 0:
        return _fail("--timeout must not be negative", code=EXIT_USAGE)
    try:
        _, port = _config_for_status(args)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    deadline = time.monotonic() + args.timeout
    while True:
        if health(port, timeout=1.0) is not None:
            return EXIT_OK
        if time.monotonic() >= deadline:
            sys.stderr.write(f"cordon: no proxy answered on 127.0.0.1:{port} within {args.timeout:g} s\n")
            return EXIT_FAIL
        time.sleep(0.1)
