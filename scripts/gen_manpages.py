"""Generate the man pages of `cordon` and every `cordon-<tool>` from their argparse parsers.

Run: `uv run python scripts/gen_manpages.py` (writes) or `--check` (exit 1 when a committed page is stale).
Pages go to `<package>/data/share/man/man1/`, which uv_build ships as wheel data (`share/man/man1/`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib import metadata
from pathlib import Path

from argparse_manpage.manpage import Manpage

ROOT = Path(__file__).resolve().parents[1]
DATE = "2026"  # fixed, so the pages are reproducible and the staleness check is stable

# (prog, distribution, module holding build_parser, project directory)
PAGES: tuple[tuple[str, str, str, Path], ...] = (
    ("cordon", "cordon", "cordon.cli", ROOT),
    ("cordon-ca", "cordon-ca", "cordon_ca.cli", ROOT / "packages" / "cordon-ca"),
    ("cordon-config", "cordon-config", "cordon_config.cli", ROOT / "packages" / "cordon-config"),
    ("cordon-proxy", "cordon-proxy", "cordon_proxy.cli", ROOT / "packages" / "cordon-proxy"),
    ("cordon-setup", "cordon-setup", "cordon_setup.cli", ROOT / "packages" / "cordon-setup"),
    ("cordon-doctor", "cordon-doctor", "cordon_doctor.cli", ROOT / "packages" / "cordon-doctor"),
    ("cordon-pg", "cordon-pg", "cordon_pg.cli", ROOT / "packages" / "cordon-pg"),
)


def page_path(prog: str, project: Path) -> Path:
    """Where the committed page of ``prog`` lives."""
    return project / "data" / "share" / "man" / "man1" / f"{prog}.1"


def render(prog: str, dist: str, module: str) -> str:
    """The man page text for one program."""
    tool = importlib.import_module(module)
    # a tool whose CLI hands each command's arguments to that command's own parser offers the whole tree here
    parser = getattr(tool, "build_manpage_parser", tool.build_parser)(prog)
    data = {
        "date": DATE,
        "project_name": dist,
        "version": metadata.version(dist),
        "manual_title": "cordon manual",
    }
    return str(Manpage(parser, _data=data))


def main(argv: list[str] | None = None) -> int:
    """Write every page, or with --check report the stale ones."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--check", action="store_true", help="do not write; exit 1 if any page is stale")
    args = ap.parse_args(argv)
    stale = []
    for prog, dist, module, project in PAGES:
        text = render(prog, dist, module)
        path = page_path(prog, project)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(path)
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'stale' if args.check else 'wrote'}: {path.relative_to(ROOT)}")
    return 1 if (args.check and stale) else 0


if __name__ == "__main__":
    sys.exit(main())
