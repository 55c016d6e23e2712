"""Every `--help` page carries real examples.

The pages are discovered, not listed (scripts/cli_pages.py): `cordon --help`, each `cordon.commands` entry
point, and every argparse subcommand inside. A page passes when its text has an `example:`/`examples:` section
with at least one `cordon …` line, and every example that runs a cordon command parses with that command's
parser (`cordon route add --name x …` is checked by `cordon route add`'s parser).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("cordon_cli_pages", ROOT / "scripts" / "cli_pages.py")
assert _spec is not None and _spec.loader is not None
cli_pages = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("cordon_cli_pages", cli_pages)  # dataclasses look their module up
_spec.loader.exec_module(cli_pages)

PAGES = cli_pages.pages()


def test_the_discovery_finds_nested_subcommands() -> None:
    ids = {page.id for page in PAGES}
    assert {"cordon route add", "cordon secret set", "cordon token rotate", "cordon start", "cordon demo"} <= ids


def test_umbrella_help_has_examples() -> None:
    lines = cli_pages.examples(cli_pages.help_text(()))
    assert lines, "cordon --help has no examples section with a `cordon ...` line"
    for line in lines:
        assert cli_pages.parse_problem(line, PAGES) is None, line


@pytest.mark.parametrize("page", PAGES, ids=[p.id for p in PAGES])
def test_help_page_has_a_real_example(page: object) -> None:
    lines = cli_pages.examples(cli_pages.help_text(page.words))
    assert lines, f"`{page.id} --help` has no 'examples:' section with a `cordon ...` line"
    for line in lines:
        if line.startswith("cordon "):  # `cordon-ca generate` examples belong to the standalone tool
            problem = cli_pages.parse_problem(line, PAGES)
            assert problem is None, f"example `{line}` on `{page.id} --help` does not parse: {problem}"
