"""The docs stay true.

- docs/troubleshooting.md has an entry for every `X-Cordon-Error` code the proxy can send and every error
  message the tools can print (found in their sources by scripts/error_catalogue.py; see its docstring for
  what counts and how a message is matched);
- every relative link in docs/*.md, README.md and the changelogs resolves, anchors included;
- every `cordon ...` command in a code block of the user docs parses with the real parsers.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
USER_DOCS = ("index.md", "getting-started.md", "configuration.md", "secrets.md", "tls-and-trust.md",
             "troubleshooting.md", "databases.md")


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"cordon_{name}", ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


catalogue = _load("error_catalogue")
cli_pages = _load("cli_pages")


def _linked_files() -> list[Path]:
    return [*sorted(DOCS.glob("*.md")), ROOT / "README.md", ROOT / "CHANGELOG.md",
            *sorted(ROOT.glob("packages/*/CHANGELOG.md")), *sorted(ROOT.glob("packages/*/README.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading anchor of a Markdown file (duplicates numbered as GitHub does)."""
    seen: dict[str, int] = {}
    out = set()
    in_code = False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code:
            continue
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def _links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text)


def test_troubleshooting_lists_every_x_cordon_error_code() -> None:
    codes, _ = catalogue.missing()
    assert not codes, f"docs/troubleshooting.md lacks X-Cordon-Error codes: {codes}"


def test_troubleshooting_lists_every_error_message() -> None:
    _, messages = catalogue.missing()
    lines = [f"  {m.file}:{m.line}: {m.template}   (needs: {m.fragment!r})" for m in messages]
    assert not messages, (
        "docs/troubleshooting.md has no entry for these messages (what it means and the fix); "
        "`uv run python scripts/error_catalogue.py` lists them:\n" + "\n".join(lines)
    )


def test_the_catalogue_finds_the_messages_it_should() -> None:
    """Guard the extractor itself: a few messages known to exist must be found."""
    fragments = {m.fragment for m in catalogue.messages()}
    assert any("--scope and --config are mutually exclusive" in f for f in fragments)
    assert any("routes are configured but the [tls] table is missing" in f for f in fragments)
    assert {"bad-request", "proxy-auth-required", "secret-unavailable", "upstream-tls"} <= catalogue.proxy_codes()


@pytest.mark.parametrize("path", _linked_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path) -> None:
    broken = []
    for link in _links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", link) or link.startswith("//"):
            continue  # http:, https:, mailto:
        target, _, anchor = link.partition("#")
        dest = (path.parent / target).resolve() if target else path
        if not dest.exists():
            broken.append(f"{link} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{link} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{path.relative_to(ROOT)}: broken links: {broken}"


def _doc_commands(path: Path) -> list[str]:
    """`cordon ...` command lines in the fenced shell blocks of ``path`` (continuations joined)."""
    commands = []
    for block in re.findall(r"```(?:sh|bash|console|shell)\n(.*?)```", path.read_text(encoding="utf-8"), re.S):
        pending = ""
        for raw in block.splitlines():
            line = (pending + " " + raw.strip()) if pending else raw.strip()
            pending = ""
            if line.endswith("\\"):
                pending = line[:-1].rstrip()
                continue
            line = line.removeprefix("$ ")
            for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", line):
                if re.match(r"^cordon( |$)", part):
                    commands.append(part)
    return commands


PAGES = cli_pages.pages()


@pytest.mark.parametrize("name", USER_DOCS)
def test_documented_commands_parse(name: str) -> None:
    path = DOCS / name
    if not path.exists():
        pytest.fail(f"docs/{name} is missing")
    problems = [f"{line}: {p}" for line in _doc_commands(path) if (p := cli_pages.parse_problem(line, PAGES))]
    assert not problems, f"docs/{name}: commands that do not parse:\n" + "\n".join(problems)


def test_readme_commands_parse() -> None:
    path = ROOT / "README.md"
    problems = [f"{line}: {p}" for line in _doc_commands(path) if (p := cli_pages.parse_problem(line, PAGES))]
    assert not problems, "README.md: commands that do not parse:\n" + "\n".join(problems)


def test_index_links_every_doc() -> None:
    index = (DOCS / "index.md").read_text(encoding="utf-8")
    unlinked = [p.name for p in sorted(DOCS.glob("*.md")) if p.name != "index.md" and f"({p.name})" not in index]
    assert not unlinked, f"docs/index.md does not link {unlinked}"
