"""The argument parser every cordon tool uses: bad usage is one ``cordon:`` line and exit 2, no usage dump,
with a suggestion for a mistyped subcommand or option ("did you mean …?")."""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from typing import NoReturn

USAGE_EXIT = 2

_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)$")
_UNRECOGNIZED = re.compile(r"unrecognized arguments: (.*)$")


def did_you_mean(word: str, candidates: list[str]) -> str | None:
    """The candidate closest to ``word`` (difflib), or None when none is close enough."""
    import difflib  # only for a usage error: a running proxy must not pay for it

    close = difflib.get_close_matches(word, candidates, n=1, cutoff=0.6)
    return close[0] if close else None


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every subcommand parser under it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                yield from _parsers(sub)


def _options(parser: argparse.ArgumentParser) -> list[str]:
    found: list[str] = []
    for each in _parsers(parser):
        for action in each._actions:
            found += [flag for flag in action.option_strings if flag.startswith("--") and flag not in found]
    return found


def suggestion(parser: argparse.ArgumentParser, message: str) -> str | None:
    """``did you mean 'list'?`` for ``invalid choice: 'lst'``, ``did you mean --name?`` for ``--nmae``."""
    match = _CHOICE.search(message)
    if match:
        choices = re.findall(r"'([^']*)'", match.group(2))
        close = did_you_mean(match.group(1), choices)
        return f"did you mean '{close}'?" if close else None
    match = _UNRECOGNIZED.search(message)
    if match:
        for word in match.group(1).split():
            if word.startswith("--"):
                close = did_you_mean(word.split("=", 1)[0], _options(parser))
                if close:
                    return f"did you mean {close}?"
    return None


class CordonArgumentParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors read ``cordon: <what is wrong>; did you mean …? (see <prog>
    --help)``."""

    def error(self, message: str) -> NoReturn:
        hint = suggestion(self, message)
        self.exit(USAGE_EXIT, f"cordon: {message}{'; ' + hint if hint else ''} (see {self.prog} --help)\n")
