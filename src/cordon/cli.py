"""``cordon COMMAND [ARGS]``: dispatch to the cordon tool that owns COMMAND.

Listing commands reads entry-point metadata only; a tool's code is imported only when its command runs,
so a broken or missing tool breaks only its own commands.
"""

from __future__ import annotations

import os
import sys

from cordon import __version__
from cordon.catalogue import KNOWN_COMMANDS, TOOL_DISTS
from cordon.discover import Command, DuplicateCommand, discover, installed_version

TYPE_CHECKING = False  # no `typing` at run time: it costs more start-up than the rest of --help
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Sequence
    from typing import TextIO


OK, ERROR, USAGE, NOT_INSTALLED = 0, 1, 2, 3

EXAMPLES = """\
examples:
  cordon demo                          see credential injection end to end (no account, no network)
  cordon setup codex                   CA, cordon.toml, tokens and Codex's .codex/.env + config.toml
  cordon route add --name openai --host api.openai.com --auth-type header \\
      --header-name Authorization --scheme Bearer --source keyring --account openai
  cordon secret set openai             store the real key (read without echo)
  cordon start                         run the proxy in the foreground
  cordon help route add                help for one command
"""


def install_hint(dist: str) -> str:
    """The command that installs a missing cordon tool (from a checkout: docs/getting-started.md#install).

    Not ``uv tool install cordon``: the name ``cordon`` on PyPI belongs to another project.
    """
    return f"pip install {dist}"


def build_parser(prog: str = "cordon") -> argparse.ArgumentParser:
    """The umbrella's own parser, used for the man page (``--help`` is rendered by :func:`render_help`)."""
    import argparse

    listing = "\n".join(f"  {c.name:<12} {c.summary} ({c.dist})" for c in KNOWN_COMMANDS)
    parser = argparse.ArgumentParser(
        prog=prog,
        description="cordon: a local proxy that injects real API credentials into your AI agent's HTTPS "
        "requests, so the agent only ever holds a dummy key.",
        epilog=f"commands:\n{listing}\n  help CMD     show the help of one command\n\n{EXAMPLES}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        add_help=False,
    )
    parser.add_argument("-h", "--help", action="store_true", help="show this help and every command")
    parser.add_argument("-V", "--version", action="store_true", help="print the version of every cordon tool")
    parser.add_argument("command", nargs="?", help="the command to run (see the list below)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments for the command")
    return parser


def render_help(
    commands: dict[str, Command], out: TextIO, version_of: Callable[[str], str | None] = installed_version
) -> None:
    """Write the usage line and every command grouped by tool, marking those whose tool is missing."""
    out.write("usage: cordon [-h] [-V] COMMAND [ARGS...]\n\n")
    out.write(
        "cordon injects real API credentials into an AI agent's HTTPS requests; the agent holds a dummy key.\n"
    )
    known = {c.name for c in KNOWN_COMMANDS}
    for dist in TOOL_DISTS:
        version = version_of(dist)
        state = f"{version}" if version else "not installed"
        out.write(f"\n{dist} ({state}):\n")
        for cmd in KNOWN_COMMANDS:
            if cmd.dist != dist:
                continue
            mark = "" if cmd.name in commands else f"  [missing: {install_hint(dist)}]"
            out.write(f"  {cmd.name:<12} {cmd.summary}{mark}\n")
    extra = sorted(set(commands) - known)
    if extra:
        out.write("\nother installed commands:\n")
        for name in extra:
            out.write(f"  {name:<12} (from {commands[name].dist})\n")
    out.write("\nbuilt-in:\n  help CMD...   show the help of one command (`cordon help route add`)\n")
    out.write("\n" + EXAMPLES)


def render_version(out: TextIO) -> None:
    """Write the umbrella version and each installed tool's version."""
    out.write(f"cordon {__version__}\n")
    for dist in TOOL_DISTS:
        out.write(f"{dist} {installed_version(dist) or 'not installed'}\n")


def _run_external(name: str, argv: list[str]) -> int | None:
    """Run a `cordon-NAME` executable from the scripts dir or PATH (git-style), or None if there is none."""
    import shutil
    import sysconfig

    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    path = shutil.which(f"cordon-{name}", path=search)
    if path is None:
        return None
    import subprocess

    return subprocess.call([path, *argv])


def run_command(name: str, argv: list[str], commands: dict[str, Command]) -> int:
    """Run one command; unknown names exit 2 with a suggestion, missing tools exit 3 with the install hint."""
    cmd = commands.get(name)
    if cmd is None:
        owner = next((c for c in KNOWN_COMMANDS if c.name == name), None)
        if owner is not None:
            sys.stderr.write(
                f"cordon: command '{name}' needs {owner.dist}, which is not installed; "
                f"install it with: {install_hint(owner.dist)}\n"
            )
            return NOT_INSTALLED
        external = _run_external(name, argv)
        if external is not None:
            return external
        sys.stderr.write(f"cordon: unknown command '{name}'.{_suggest(name, commands)}\n")
        return USAGE
    fn = cmd.load()
    return int(fn(argv, prog=f"cordon {name}") or 0)


def _suggest(name: str, commands: dict[str, Command]) -> str:
    """`` Did you mean 'cordon start' or 'cordon status'?`` (the close commands that exist), else where the
    list is."""
    import difflib

    names = sorted(set(commands) | {c.name for c in KNOWN_COMMANDS} | {"help"})
    scores = {c: difflib.SequenceMatcher(None, name, c).ratio() for c in names}
    best = max(scores.values(), default=0.0)
    close = [c for c in names if scores[c] >= max(0.7, best - 0.05)]  # a typo, not another word
    if not close:
        return " Run 'cordon --help' for the list."
    quoted = [f"'cordon {c}'" for c in close]
    return f" Did you mean {quoted[0] if len(quoted) == 1 else ', '.join(quoted[:-1]) + ' or ' + quoted[-1]}?"


HELP_USAGE = """\
usage: cordon help [COMMAND [SUBCOMMAND...]]

Show the help of a command (`cordon help route add` is `cordon route add --help`), or of cordon itself.

examples:
  cordon help                 every command, grouped by tool
  cordon help route add       the options of `cordon route add`
"""


def run_help(words: list[str], commands: dict[str, Command]) -> int:
    """``cordon help [COMMAND [SUBCOMMAND...]]``."""
    if not words:
        render_help(commands, sys.stdout)
        return OK
    if words[0] in ("-h", "--help"):
        sys.stdout.write(HELP_USAGE)
        return OK
    return run_command(words[0], [*words[1:], "--help"], commands)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cordon`` script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not isinstance(sys.stdout, _Tolerant):
        sys.stdout = _Tolerant(sys.stdout)  # type: ignore[assignment]
    try:
        commands = discover()
    except DuplicateCommand as exc:
        sys.stderr.write(f"cordon: {exc}\n")
        return ERROR
    try:
        if not args or args[0] in ("-h", "--help"):
            render_help(commands, sys.stdout)
            return OK
        if args[0] in ("-V", "--version"):
            render_version(sys.stdout)
            return OK
        if args[0] == "help":
            return run_help(args[1:], commands)
        if args[0].startswith("-"):
            import difflib

            close = difflib.get_close_matches(args[0], ["--help", "--version"], n=1, cutoff=0.6)
            hint = f" Did you mean '{close[0]}'?" if close else ""
            sys.stderr.write(f"cordon: unknown option '{args[0]}'.{hint} Run 'cordon --help'.\n")
            return USAGE
        return run_command(args[0], args[1:], commands)
    except KeyboardInterrupt:
        sys.stderr.write("cordon: interrupted\n")
        return 130
    except BrokenPipeError:
        # stdout closed early (`cordon --help | head`): not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return OK
    finally:
        if isinstance(sys.stdout, _Tolerant) and sys.stdout.closed_early:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at interpreter exit


class _Tolerant:
    """stdout that a reader may close early (`cordon setup codex | head -1`): the output stops, the command
    does not. Without it the first print after the close raises and the command stops half done."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.closed_early = False

    def write(self, text: str) -> int:
        if not self.closed_early:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self.closed_early = True
        return len(text)

    def flush(self) -> None:
        if not self.closed_early:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self.closed_early = True

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)
