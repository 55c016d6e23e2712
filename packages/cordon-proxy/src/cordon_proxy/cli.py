"""Command line of cordon-proxy: ``cordon start|status|wait|stop|restart|reload``.

``start`` runs the proxy in the foreground, loading in a fixed order (:func:`cordon_proxy.runtime.load_runtime`:
config → approvals → every secret → CA → tokens → upstream trust → identity key), then binds
127.0.0.1:<listen> and serves. SIGINT/SIGTERM let in-flight requests finish (up to 10 s), then exit 0; SIGHUP
reloads (the same loading; on any problem the running config stays and the reason is logged).

The other commands look at the port through :func:`cordon_config.identity.probe` and act only on this scope's
own cordon: another scope's proxy or anything else on the port is named, never trusted or signalled.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
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
    from cordon_config.identity import ProbeResult
    from cordon_config.scope import ScopePaths

    from cordon_proxy.audit import AuditLog
    from cordon_proxy.logs import Logger
    from cordon_proxy.runtime import Runtime

__all__ = [
    "build_parser",
    "logs_main",
    "main",
    "reload_main",
    "restart_main",
    "start_main",
    "status_main",
    "stop_main",
    "wait_main",
]

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

START_EPILOG = """examples:
  cordon start                          # project scope: the nearest cordon.toml here or above
  cordon start --scope user --log-format json --log-level debug
  cordon start --log-file ~/cordon.log  # log there (0600, appended; `cordon logs` finds it)
"""
STATUS_EPILOG = """examples:
  cordon status
  cordon status --quiet || echo "cordon is not running"
  cordon status --json

Only this scope's own cordon counts as running: its identity is proven with the scope's key (identity.key in
the state dir). Another scope's cordon, or anything else on the port, is named and exits 1.
"""
STOP_EPILOG = """examples:
  cordon stop
  cordon stop --config ~/work/api/cordon.toml
"""
RESTART_EPILOG = """examples:
  cordon restart                        stop this scope's proxy, start it again in the background
  cordon restart --scope user

The new proxy runs with this command's environment (a route's env secret must be in it) and logs to
proxy.log in the scope's state dir (`cordon logs`). A proxy run by `cordon service` is better restarted by its service
manager (systemctl --user restart cordon-<namespace>).
"""
RELOAD_EPILOG = """examples:
  cordon route edit openai --header-name x-api-key && cordon reload
  kill -HUP <pid>                       the same (the pid is in `cordon status`)

Re-reads and validates cordon.toml (and approvals, secrets, tokens.toml, the CA): new requests use it,
requests in flight finish as they started. On any problem the running config stays and the reason is printed.
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


def _timeout_arguments(parser: argparse.ArgumentParser) -> None:
    _add_scope(parser)
    parser.add_argument(
        "--timeout", type=float, default=15.0, metavar="S", help="give up after S seconds (default: 15)"
    )


TOOL_EPILOG = """\
examples:
  cordon-proxy start                       the proxy for ./cordon.toml, in the foreground (= cordon start)
  cordon-proxy start --scope user --log-format json
  cordon-proxy status --json               is it running, on which port, with how many routes
  cordon-proxy wait --timeout 5            exit 0 once this scope's proxy answers
  cordon-proxy reload                      apply an edited cordon.toml without a restart
  cordon-proxy logs -f                     follow the scope's proxy log
"""

COMMANDS: tuple[tuple[str, str, str, Callable[[argparse.ArgumentParser], None]], ...] = (
    ("start", "run the proxy in the foreground", START_EPILOG, _start_arguments),
    ("status", "say whether this scope's proxy is running", STATUS_EPILOG, _status_arguments),
    ("wait", "wait until this scope's proxy answers", WAIT_EPILOG, _wait_arguments),
    ("stop", "stop this scope's running proxy", STOP_EPILOG, _timeout_arguments),
    ("restart", "stop this scope's proxy and start it in the background", RESTART_EPILOG, _timeout_arguments),
    ("reload", "make the running proxy re-read its config", RELOAD_EPILOG, _timeout_arguments),
    ("logs", "show (or follow) this scope's proxy log", LOGS_EPILOG, add_logs_arguments),
)


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """The ``cordon-proxy`` parser with the start, status and wait subcommands."""
    parser = _Parser(
        prog=prog or "cordon-proxy", description="The cordon credential-injecting proxy.",
        epilog=TOOL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, helptext, epilog, adder in COMMANDS:
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
    """``cordon-proxy start|status|wait|stop|restart|reload ...``."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(prog)
    mains = {"start": start_main, "status": status_main, "wait": wait_main, "stop": stop_main,
             "restart": restart_main, "reload": reload_main, "logs": logs_main}
    if not args_list or args_list[0] not in mains:
        parser.parse_args(args_list)  # --help, --version or a usage error
        return EXIT_USAGE
    command, rest = args_list[0], args_list[1:]
    name = f"{prog or 'cordon-proxy'} {command}"
    return mains[command](rest, prog=name)


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


def logs_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon logs``: see :mod:`cordon_proxy.logfile`."""
    from cordon_proxy.logfile import logs_main as main_

    return main_(argv, prog=prog)


def _parse(prog: str, argv: Sequence[str] | None, command: str) -> argparse.Namespace:
    _, helptext, epilog, adder = next(c for c in COMMANDS if c[0] == command)
    parser = _single_parser(prog, helptext[0].upper() + helptext[1:] + ".", epilog, adder)
    return parser.parse_args(list(sys.argv[1:] if argv is None else argv))




# -- start -----------------------------------------------------------------------------------------------


def start_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon start``: run the proxy in the foreground until SIGINT/SIGTERM (SIGHUP reloads)."""
    args = _parse(prog or "cordon start", argv, "start")
    from cordon_proxy.hardening import harden_process
    from cordon_proxy.logs import Logger
    from cordon_proxy.runtime import LoadFailure, load_runtime

    logger = Logger(args.log_level, args.log_format)
    if args.log_file is not None:
        try:
            _log_to_file(logger, args.log_file)
        except OSError as exc:
            from cordon_config.files import os_error_message

            return _fail(*os_error_message(exc))
    hardened = harden_process()  # before any secret is loaded: no core dumps, no ptrace by peers
    logger.log("debug", "process hardening", **{k: str(v) for k, v in hardened.items()})
    logger.log("debug", "open files limit", nofile=_raise_fd_limit())
    try:
        paths = _scope(args)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    if paths.config_path.exists():
        _record(paths, args.log_file)
    try:
        runtime = load_runtime(paths, logger)
    except LoadFailure as exc:
        for line in exc.lines:
            sys.stderr.write(f"cordon: {line}\n")
        if exc.hint:
            sys.stderr.write(f"hint: {exc.hint}\n")
        return EXIT_FAIL
    if runtime.tokens is None:
        logger.log("warn", f"no proxy tokens ({paths.tokens_path} is absent): any local process may use the routes")
    audit = None
    if runtime.config.audit.enabled:
        from cordon_config.audit import AuditError

        from cordon_proxy.audit import open_audit

        try:
            audit = open_audit(paths, runtime.config.audit, logger)
        except AuditError as exc:
            return _fail(exc.message, exc.hint)
    return _serve(paths, runtime, logger, audit)


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


def _raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit (thousands of connections need as many descriptors, and
    the usual soft limit is 1024); the soft limit now."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
    if target > soft:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def _event_loop() -> tuple[str, Callable[[Coroutine[object, object, int]], int]]:
    """("uvloop", uvloop.run) when uvloop (the optional ``uvloop`` extra) imports, else the stdlib loop."""
    import asyncio  # here, not at the top: `cordon status` and `wait` never run a loop (start-up time)

    try:
        import uvloop
    except ImportError:
        return "asyncio", asyncio.run
    return "uvloop", uvloop.run


def _serve(paths: ScopePaths, runtime: Runtime, logger: Logger, audit: AuditLog | None) -> int:
    name, run = _event_loop()
    logger.log("info", f"event loop: {name}")
    return run(_run(paths, runtime, logger, audit))


async def _run(paths: ScopePaths, runtime: Runtime, logger: Logger, audit: AuditLog | None) -> int:
    import asyncio

    from cordon_proxy.hardening import release_startup_memory
    from cordon_proxy.lifecycle import Lifecycle
    from cordon_proxy.server import loop_exception_handler

    config = runtime.config
    life = Lifecycle(paths, runtime, logger=logger, version=__version__, audit=audit)
    proxy = life.proxy()
    if audit is not None:
        audit.event("start", version=__version__, pid=os.getpid(), config=str(config.path))
    try:
        # bound now (a taken port fails first), served once the listeners are up too: /health, and so
        # `cordon wait`, `restart` and `run`, answer only when every port of this config accepts
        server = await proxy.listen(config.listen, serve=False)
    except OSError as exc:
        if audit is not None:
            audit.close()
        if exc.errno == errno.EADDRINUSE:
            return _fail(
                f"port {config.listen} on 127.0.0.1 is already in use",
                f"see what holds it: cordon status --config {config.path}; or change `listen` in {config.path}",
            )
        return _fail(f"cannot listen on 127.0.0.1:{config.listen}: {exc.strerror}")
    from cordon_proxy.listeners import ListenerContext, ListenerStartError, start_listeners, stop_listeners

    verify = life.gate.verify if life.gate is not None else None
    try:
        listeners = await start_listeners(ListenerContext(config, paths, logger, proxy.secrets, verify, runtime.ca))
    except ListenerStartError as exc:
        await proxy.shutdown()
        return _fail(exc.message, exc.hint)
    await server.start_serving()
    release_startup_memory()
    life.start_watching()
    stop, now = asyncio.Event(), asyncio.Event()

    def on_signal() -> None:  # the first asks to drain; a second one (Ctrl-C again) stops at once
        (now if stop.is_set() else stop).set()

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(loop_exception_handler(logger))
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, on_signal)
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGHUP, life.request_reload)
    logger.log(
        "info", f"cordon {__version__} listening on 127.0.0.1:{config.listen}",
        routes=len(config.routes), config=str(config.path), pid=os.getpid(),
        loop="uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio",
    )
    await stop.wait()
    logger.log("info", "stopping: letting in-flight requests finish (up to 10 s; Ctrl-C again stops now)")
    life.stop()
    await stop_listeners(listeners)
    from cordon_proxy._tasks import spawn

    if proxy.audit is not None:  # (a reload may have switched it on or off)
        proxy.audit.event("stop")

    drain, interrupt = spawn(proxy.shutdown()), spawn(now.wait())
    await asyncio.wait((drain, interrupt), return_when=asyncio.FIRST_COMPLETED)
    interrupt.cancel()
    if not drain.done():
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await drain
        if proxy.audit is not None:
            proxy.audit.close()  # what shutdown would have done last
        logger.log("warn", "stopped without waiting for in-flight requests (second interrupt)")
        return EXIT_FAIL
    logger.log("info", "stopped")
    return EXIT_OK


# -- status / wait -------------------------------------------------------------------------------------


def _target(args: argparse.Namespace) -> tuple[ScopePaths, int]:
    """The scope and the port its cordon.toml names (the lenient reader: works while a route is half-edited)."""
    from cordon_config.facts import FactsError, listen_of, read_document
    from cordon_config.quickscope import file_identity
    from cordon_config.scope import missing_config

    paths = _scope(args)
    config_id = file_identity(str(paths.config_path))  # before reading: an edit meanwhile leaves a cache that misses
    try:
        doc = read_document(paths.config_path)
        if doc is None:
            raise _Usage(*missing_config(paths), code=EXIT_FAIL)  # the one "no cordon.toml" of every tool
        port = listen_of(doc, paths.config_path)
    except FactsError as exc:
        raise _Usage(str(exc)) from None
    if port is None:
        raise _Usage(f"{paths.config_path}: listen must be a port number 1-65535 (it is missing)")
    from cordon_proxy.statusfast import save_cache

    save_cache(str(paths.config_path), str(paths.state_dir), config_id, port, time.time())  # the fast path's
    return paths, port


def _file_digest(path: Path) -> str | None:
    from cordon_config.identity import config_digest

    try:
        return config_digest(path.read_bytes())
    except OSError:
        return None


def _probe(paths: ScopePaths, port: int, timeout: float = 2.0) -> ProbeResult:
    from cordon_config.identity import IdentityError, probe

    try:
        return probe(paths, port, timeout)
    except IdentityError as exc:
        raise _Usage(exc.message, exc.hint) from None


def status_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon status``: this scope's proxy running or not; what else holds its port."""
    args = _parse(prog or "cordon status", argv, "status")
    try:
        paths, port = _target(args)
        state = _probe(paths, port)
    except _Usage as exc:
        if args.quiet:
            return EXIT_FAIL
        return _fail(str(exc), exc.hint, code=exc.code)
    if args.quiet:
        return EXIT_OK if state.ours else EXIT_FAIL
    from cordon_proxy.statusfast import not_running_text, running_text, status_json

    config_path = str(paths.config_path)
    health = state.health
    current = health.get("config_digest") == _file_digest(paths.config_path) if state.ours else None
    if args.json:
        held_by = str(state.other_config) if state.kind == "other-scope" else state.owner
        sys.stdout.write(status_json(port, config_path, state.kind, health, current, held_by))
        return EXIT_OK if state.ours else EXIT_FAIL
    if state.ours:
        sys.stdout.write(running_text(port, config_path, health, bool(current), paths.flag))
        return EXIT_OK
    if state.kind == "none":
        sys.stdout.write(not_running_text(port, config_path, paths.flag))
        return EXIT_FAIL
    return _fail(state.message(), state.hint(paths.config_path, paths.flag))


def wait_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon wait``: poll until this scope's proxy answers (exit 0) or the timeout passes (exit 1); fail at once
    when the port answers as something that is proven not to be this scope's cordon."""
    args = _parse(prog or "cordon wait", argv, "wait")
    if args.timeout < 0:
        return _fail("--timeout must not be negative", code=EXIT_USAGE)
    try:
        paths, port = _target(args)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    deadline = time.monotonic() + args.timeout
    while True:
        try:
            state = _probe(paths, port, timeout=1.0)
        except _Usage as exc:
            return _fail(str(exc), exc.hint, code=exc.code)
        if state.ours:
            return EXIT_OK
        if state.settled:  # another scope's cordon or an impostor answered: waiting will not change that
            return _fail(state.message(), state.hint(paths.config_path, paths.flag))
        if time.monotonic() >= deadline:
            if state.kind == "none":
                sys.stderr.write(f"cordon: no proxy answered on 127.0.0.1:{port} within {args.timeout:g} s\n")
                return EXIT_FAIL
            return _fail(state.message(), state.hint(paths.config_path, paths.flag))
        time.sleep(0.1)


# -- stop / restart / reload ---------------------------------------------------------------------------------


def stop_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon stop``: SIGTERM this scope's proxy (only after it proved it is) and wait until it is gone."""
    args = _parse(prog or "cordon stop", argv, "stop")
    from cordon_config.control import ControlError, stop_proxy

    try:
        paths, port = _target(args)
        state = stop_proxy(paths, port, timeout=args.timeout, flag=paths.flag)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    except ControlError as exc:
        if exc.state is not None and exc.state.kind == "none":
            sys.stdout.write(f"{exc.message}: nothing to stop\n")
            return EXIT_OK
        return _fail(exc.message, exc.hint)
    sys.stdout.write(f"stopped cordon (pid {state.pid}) on 127.0.0.1:{port}\n")
    return EXIT_OK


def restart_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon restart``: stop this scope's proxy if it runs, start it in the background, wait until it answers."""
    args = _parse(prog or "cordon restart", argv, "restart")
    from cordon_config.control import ControlError, stop_proxy

    try:
        paths, port = _target(args)
        flag = paths.flag
        stop_proxy(paths, port, timeout=args.timeout, flag=flag)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    except ControlError as exc:
        if exc.state is None or exc.state.kind != "none":
            return _fail(exc.message, exc.hint)
    import subprocess

    from cordon_config.proxyproc import proxy_argv
    from cordon_config.scopes import scope_log

    log_path = scope_log(paths)  # where `cordon logs` looks
    argv_ = proxy_argv(paths.config_path, "--log-file", str(log_path))
    proc = subprocess.Popen(argv_, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd="/")
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return _fail(f"the proxy exited with code {proc.returncode} while starting", f"see {log_path}, or run "
                         f"it in the foreground: cordon start{flag}")
        state = _probe(paths, port, timeout=1.0)
        if state.ours and state.pid == proc.pid:
            sys.stdout.write(f"cordon is running on 127.0.0.1:{port} (pid {proc.pid}); log: {log_path}\n")
            return EXIT_OK
        time.sleep(0.1)
    return _fail(f"the proxy did not answer on 127.0.0.1:{port} within {args.timeout:g} s", f"see {log_path}")


def reload_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon reload``: SIGHUP this scope's proxy and report whether it took the new config."""
    args = _parse(prog or "cordon reload", argv, "reload")
    from cordon_config.control import ControlError, reload_proxy

    try:
        paths, port = _target(args)
        state = reload_proxy(paths, port, timeout=args.timeout, flag=paths.flag)
    except _Usage as exc:
        return _fail(str(exc), exc.hint, code=exc.code)
    except ControlError as exc:
        return _fail(exc.message, exc.hint)
    routes = state.health.get("routes")
    sys.stdout.write(
        f"reloaded cordon (pid {state.pid}): {routes} {'route' if routes == 1 else 'routes'}, "
        f"config {state.health.get('config_digest')}\n"
    )
    return EXIT_OK
