"""Command line of cordon-doctor: ``cordon doctor`` and ``cordon demo`` (also ``cordon-doctor [demo] ...``)."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import FrameType

from cordon_config.argparsing import CordonArgumentParser as _Parser

DOCTOR_EXAMPLES = """\
examples:
  cordon doctor                       check the project scope (./cordon.toml); a fix for each problem
  cordon doctor --scope user --json   machine-readable report for the user scope
  cordon doctor --runtimes            prove curl, python, node and git go through cordon and trust its CA
"""

DEMO_EXAMPLES = """\
examples:
  cordon demo                         see credential injection end to end (no account, no network)
  cordon demo --keep                  keep the temporary directory (config, CA, proxy log) to inspect it
"""

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Terminated(BaseException):  # like KeyboardInterrupt: not caught by `except Exception`
    """SIGTERM arrived: unwind so every ``finally`` cleans up."""


@contextmanager
def _terminate_as_exception() -> Iterator[None]:
    """Turn SIGTERM into an exception in the main thread for the duration (Ctrl-C is KeyboardInterrupt)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _tolerant_output() -> None:
    """Never crash on a terminal that cannot show '…' or '✓' (e.g. a latin-1 locale): replace them."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="replace")
            except (ValueError, OSError):
                pass


def add_doctor_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cordon doctor``."""
    from cordon_config.scope import add_scope_arguments

    add_scope_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema cordon.doctor/1)")
    parser.add_argument(
        "--runtimes",
        action="store_true",
        help="also start a temporary proxy and send one request from each runtime found (curl, python, node, git)",
    )


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``cordon demo``."""
    parser.add_argument("--json", action="store_true", help="print one JSON document (schema cordon.demo/1)")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temporary directory and print its path (for inspection)"
    )


def build_doctor_parser(prog: str = "cordon doctor") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Check a cordon scope: config, CA, bundle, tokens, secrets, port, service and integration\n"
        "files. One line per check with the exact fix; changes nothing. Exit 0 when nothing failed, 1 otherwise.",
        epilog=DOCTOR_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_doctor_arguments(parser)
    return parser


def build_demo_parser(prog: str = "cordon demo") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog,
        description="Run cordon end to end in a temporary directory: CA, a local TLS echo upstream, a throwaway\n"
        "secret, the real proxy and one request with a dummy key. Needs no account and no network; cleans up.",
        epilog=DEMO_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_demo_arguments(parser)
    return parser


def build_parser(prog: str = "cordon-doctor") -> argparse.ArgumentParser:
    """``cordon-doctor [doctor] [options]`` and ``cordon-doctor demo [options]``."""
    parser = _Parser(
        prog=prog,
        description="cordon diagnostics (doctor) and the self-contained demo.",
        epilog=DOCTOR_EXAMPLES.replace("cordon doctor", prog)
        + DEMO_EXAMPLES.replace("cordon demo", f"{prog} demo").replace("examples:\n", ""),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_doctor_arguments(sub.add_parser("doctor", help="check a scope (the default command)"))
    add_demo_arguments(sub.add_parser("demo", help="credential injection end to end, no network"))
    return parser


def main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon-doctor``: runs ``demo`` when asked, the doctor otherwise."""
    args = list(sys.argv[1:] if argv is None else argv)
    prog = prog or "cordon-doctor"
    if args[:1] == ["demo"]:
        return demo_main(args[1:], prog=f"{prog} demo")
    if args[:1] == ["doctor"]:
        args = args[1:]
    if args[:1] in (["-h"], ["--help"]):
        build_parser(prog).print_help()
        return EXIT_OK
    return doctor_main(args, prog=prog)


def doctor_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon doctor``."""
    args = build_doctor_parser(prog or "cordon doctor").parse_args(argv)
    _tolerant_output()
    from cordon_config.scope import ScopeError, scope_from_args

    try:
        paths = scope_from_args(args)
    except ScopeError as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return EXIT_USAGE
    from cordon_doctor.doctor import run_doctor

    try:
        with _terminate_as_exception():
            return run_doctor(
                paths, as_json=args.json, runtimes=args.runtimes, out=sys.stdout, explicit_config=args.config is not None
            )
    except (KeyboardInterrupt, Terminated):
        sys.stderr.write("cordon: interrupted\n")
        return EXIT_INTERRUPTED


def demo_main(argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """``cordon demo``."""
    args = build_demo_parser(prog or "cordon demo").parse_args(argv)
    _tolerant_output()
    from cordon_doctor.demo import run_demo

    try:
        with _terminate_as_exception():
            return run_demo(as_json=args.json, keep=args.keep, out=sys.stdout)
    except (KeyboardInterrupt, Terminated):
        sys.stderr.write("cordon: demo interrupted; everything it started was stopped and removed\n")
        return EXIT_INTERRUPTED
