"""The committed man pages are what argparse-manpage makes of the current parsers."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gen_manpages", ROOT / "scripts" / "gen_manpages.py")
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen)


@pytest.mark.parametrize(("prog", "dist", "module", "project"), gen.PAGES, ids=[p[0] for p in gen.PAGES])
def test_man_page_is_current(prog: str, dist: str, module: str, project: Path) -> None:
    path = gen.page_path(prog, project)
    assert path.exists(), f"{path} is missing: run `uv run python scripts/gen_manpages.py`"
    assert path.read_text(encoding="utf-8") == gen.render(prog, dist, module), (
        f"{path.relative_to(ROOT)} is stale: run `uv run python scripts/gen_manpages.py`"
    )


# every command a tool owns gets its own section in the tool's page, with its options
OWN_OPTIONS = {
    "cordon-setup": {"setup": ["--dry-run", "--yes"], "env": ["--format", "--token"], "run": ["--token"],
                     "integration disable": ["--dry-run"], "service": ["--json", "NAME"]},
    "cordon-proxy": {"start": ["--log-format", "--log-level"], "status": ["--json"], "wait": ["--timeout"]},
}


def plain(roff: str) -> str:
    """The text of a man page without its font escapes."""
    return re.sub(r"\\f[BIRP]|\\[,/]", "", roff).replace("\\-", "-")


@pytest.mark.parametrize("prog", sorted(OWN_OPTIONS))
def test_man_page_documents_each_command_and_its_options(prog: str) -> None:
    project = next(p[3] for p in gen.PAGES if p[0] == prog)
    text = plain(gen.page_path(prog, project).read_text(encoding="utf-8"))
    for command, options in OWN_OPTIONS[prog].items():
        start = text.index(f"COMMAND '{prog} {command}'")
        end = text.find("COMMAND '", start + 1)
        section = text[start:end if end > 0 else len(text)]
        for option in options:
            assert option in section, (prog, command, option)
