"""Every `cordon` help page, discovered from the installed parsers, and a checker for `cordon ...` lines.

Used by tests/test_help_examples.py and tests/test_docs.py (loaded by path: test modules cannot import each
other). Run `uv run python scripts/cli_pages.py` to list the pages and the examples each one carries.

Discovery: `cordon --help`, then each `cordon.commands` entry point, and inside each command every argparse
subcommand, found by stopping the command at its first parse and walking the parser it built.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata

GROUP = "cordon.commands"
SHELL_OPERATORS = {"&&", "||", "|", ";", ">", "2>", ">>", "<", "2>&1"}


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        super().__init__(parser.prog)
        self.parser = parser


@dataclass(frozen=True)
class Page:
    """One help page: the words after `cordon`, and the parser that prints it."""

    words: tuple[str, ...]
    parser: argparse.ArgumentParser

    @property
    def id(self) -> str:
        return " ".join(("cordon", *self.words))


def _capture_parser(fn: Callable[..., int], prog: str) -> argparse.ArgumentParser:
    """The top-level parser ``fn`` builds: stop it at its first parse and hand the parser back."""
    original = argparse.ArgumentParser.parse_known_args

    def capture(self: argparse.ArgumentParser, *args: object, **kwargs: object) -> object:
        raise _Captured(self)

    argparse.ArgumentParser.parse_known_args = capture  # type: ignore[method-assign]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            fn(["--help"], prog=prog)
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_known_args = original  # type: ignore[method-assign]
    raise AssertionError(f"{prog}: no argparse parser was used")


def _subcommands(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    seen: set[int] = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                if id(sub) not in seen:  # aliases point at the same parser
                    seen.add(id(sub))
                    yield name, sub


def pages() -> list[Page]:
    """Every command and subcommand page, breadth first per command."""
    found: list[Page] = []
    for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        parser = _capture_parser(ep.load(), f"cordon {ep.name}")
        queue = [((ep.name,), parser)]
        while queue:
            words, current = queue.pop(0)
            found.append(Page(words, current))
            queue.extend(((*words, name), sub) for name, sub in _subcommands(current))
    return found


def help_text(words: tuple[str, ...]) -> str:
    """What `cordon WORDS --help` prints, run through the umbrella as a user would."""
    from cordon.cli import main as umbrella_main

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        try:
            code = umbrella_main([*words, "--help"])
        except SystemExit as exc:
            code = exc.code
    if code not in (0, None):
        raise AssertionError(f"cordon {' '.join(words)} --help exited {code}")
    return out.getvalue()


def examples(text: str) -> list[str]:
    """The `cordon …` command lines of the examples section(s) of a help page (continuations joined)."""
    found: list[str] = []
    in_section = False
    pending = ""
    for line in text.splitlines():
        if re.match(r"^\s*examples?:\s*$", line, re.I):
            in_section = True
            continue
        if in_section and line and not line[0].isspace():
            in_section = False
        if not in_section:
            continue
        stripped = line.strip()
        if pending:
            stripped = pending + " " + stripped
            pending = ""
        elif not re.match(r"^(\$ )?cordon(-[a-z]+)?( |$)", stripped):
            continue
        if stripped.endswith("\\"):
            pending = stripped[:-1].rstrip()
            continue
        found.append(re.split(r"\s{2,}|\s+#\s", stripped.removeprefix("$ "), maxsplit=1)[0])
    return found


def command_argv(line: str) -> list[str]:
    """``line`` split like a shell, cut at the first shell operator or comment."""
    words = shlex.split(line, comments=True)
    for i, word in enumerate(words):
        if word in SHELL_OPERATORS:
            return words[:i]
    return words


def parse_problem(line: str, all_pages: list[Page]) -> str | None:
    """Why the `cordon ...` command ``line`` would not parse (None when it does).

    The page is the longest run of words naming a command (`cordon route add` before `cordon route`); the
    rest must parse with that page's parser. `cordon run -- CMD`: the wrapped command is not checked.
    """
    argv = command_argv(line)
    if not argv or argv[0] != "cordon":
        return f"not a cordon command: {line}"
    by_words = {page.words: page for page in all_pages}
    rest = argv[1:]
    page = None
    for n in range(len(rest), 0, -1):
        if tuple(rest[:n]) in by_words:
            page, rest = by_words[tuple(rest[:n])], rest[n:]
            break
    if page is None:
        if not rest or rest[0].startswith("-") or rest[0] == "help":
            return None  # the umbrella's own options: `cordon --help`, `cordon -V`, `cordon help CMD`
        return f"unknown command `cordon {rest[0]}`"
    if "--" in rest:
        rest = [*rest[: rest.index("--") + 1], "x"]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            page.parser.parse_args(rest)
        except SystemExit as exc:
            if exc.code not in (0, None):
                return " ".join(err.getvalue().split()) or f"exit {exc.code}"
    return None


def main() -> int:
    """List every page with its examples."""
    for page in pages():
        lines = examples(help_text(page.words))
        print(f"{page.id}: {len(lines)} example(s)")
        for line in lines:
            print(f"    {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
