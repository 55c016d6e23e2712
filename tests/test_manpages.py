"""The committed man pages are what argparse-manpage makes of the current parsers."""

from __future__ import annotations

import importlib.util
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
