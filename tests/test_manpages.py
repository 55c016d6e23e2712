"""The man pages: current with the parsers, the usual sections, indexable by whatis/apropos, and found by
`man` after the README's install."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gen_manpages", ROOT / "scripts" / "gen_manpages.py")
assert _spec is not None and _spec.loader is not None
gen = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("gen_manpages", gen)
_spec.loader.exec_module(gen)

IDS = [p[0] for p in gen.PAGES]
SECTIONS = ("NAME", "SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXAMPLES", "FILES", "ENVIRONMENT", "EXIT STATUS",
            "SEE ALSO")


def _text(prog: str) -> str:
    project = next(p[3] for p in gen.PAGES if p[0] == prog)
    return gen.page_path(prog, project).read_text(encoding="utf-8")


@pytest.mark.parametrize(("prog", "dist", "summary", "project"), gen.PAGES, ids=IDS)
def test_man_page_is_current(prog: str, dist: str, summary: str, project: Path) -> None:
    path = gen.page_path(prog, project)
    assert path.exists(), f"{path} is missing: run `uv run python scripts/gen_manpages.py`"
    assert path.read_text(encoding="utf-8") == gen.render(prog, dist, summary), (
        f"{path.relative_to(ROOT)} is stale: run `uv run python scripts/gen_manpages.py`"
    )


@pytest.mark.parametrize("prog", IDS)
def test_the_usual_sections_in_order_and_no_comments_dump(prog: str) -> None:
    headings = re.findall(r'^\.SH "?([^"\n]+)"?$', _text(prog), re.M)
    assert headings == list(SECTIONS), headings
    assert "COMMENTS" not in _text(prog)


@pytest.mark.parametrize("prog", IDS)
def test_name_has_a_description_lexgrog_accepts(prog: str) -> None:
    text = _text(prog)
    name = text.split(".SH NAME\n", 1)[1].split("\n", 1)[0]
    assert re.fullmatch(rf"{re.escape(gen.esc(prog))} \\- \S.{{10,}}", name), name
    lexgrog = shutil.which("lexgrog")
    if lexgrog is None:
        pytest.skip("lexgrog (man-db) is not installed; .ci/run installs it")
    project = next(p[3] for p in gen.PAGES if p[0] == prog)
    done = subprocess.run([lexgrog, str(gen.page_path(prog, project))], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'"{prog} - ' in done.stdout


def plain(roff: str) -> str:
    """The text of a man page without its font escapes."""
    return re.sub(r"\\f[BIRP]|\\&", "", roff).replace("\\-", "-").replace("\\e", "\\")


def _section(text: str, title: str) -> str:
    start = text.index(f'.SS "{title}"\n')
    end = text.find(".SS ", start + 1)
    end = text.find(".SH ", start + 1) if end < 0 else end
    return text[start:end]


# every command a tool owns gets its own section in the tool's page (and in cordon.1), with its options
OWN_OPTIONS = {
    "cordon-setup": {"setup": ["--dry-run", "--yes", "--port", "--upstream-ca-file", "--secret-ttl", "--new-scope"],
                     "env": ["--format", "--token"], "run": ["--token"], "integration disable": ["--dry-run"],
                     "service install": ["--dry-run", "NAME"], "service status": ["--json"]},
    "cordon-proxy": {"start": ["--log-format", "--log-level", "--log-file"], "status": ["--json"],
                     "wait": ["--timeout"], "logs": ["--follow", "--lines", "--path"]},
    "cordon-config": {"config set": ["KEY", "VALUE"], "scopes prune": ["--yes", "--dry-run"],
                      "scopes list": ["--json"], "route remove": ["--delete-secret"]},
}


@pytest.mark.parametrize("prog", sorted(OWN_OPTIONS))
def test_each_command_has_its_section_with_its_options(prog: str) -> None:
    for page in (prog, "cordon"):
        text = plain(_text(page))
        for command, options in OWN_OPTIONS[prog].items():
            section = _section(text, f"cordon {command}")
            for option in options:
                assert option in section, (page, command, option)


def test_examples_are_verbatim_not_reflowed() -> None:
    """The examples of `cordon setup --help` appear line for line inside a no-fill block."""
    import io
    from contextlib import redirect_stdout

    from cordon_setup.cli import setup_main

    out = io.StringIO()
    with redirect_stdout(out), pytest.raises(SystemExit):
        setup_main(["--help"])
    examples = out.getvalue().split("examples:\n", 1)[1].rstrip("\n").split("\n")
    section = _section(_text("cordon-setup"), "cordon setup")
    block = section.split(".nf\n")[-1].split("\n.fi", 1)[0]
    assert [plain(line) for line in block.split("\n")] == examples


@pytest.mark.skipif(shutil.which("man") is None, reason="man (man-db) is not installed; .ci/run installs it")
@pytest.mark.parametrize("prog", IDS)
def test_man_renders_each_page_without_warnings(prog: str) -> None:
    project = next(p[3] for p in gen.PAGES if p[0] == prog)
    done = subprocess.run(["man", "--warnings", "-l", str(gen.page_path(prog, project))], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MANWIDTH": "100", "MANPAGER": "cat",
                                                      "PAGER": "cat"})
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr
    assert "EXIT STATUS" in done.stdout and "SEE ALSO" in done.stdout


def _readme_install_commands() -> tuple[str, str]:
    """The README's `uv tool install` line and the line that makes `man` find the pages."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    install = re.search(r"^uv tool install (.+)$", readme, re.M)
    link = re.search(r"^(ln -sf .+)$", readme, re.M)
    mkdir = re.search(r"^(mkdir -p .+)$", readme, re.M)
    assert install and link and mkdir, "README: the install block (uv tool install, mkdir -p, ln -sf) is missing"
    def code(line: str) -> str:
        return re.sub(r"\s+#.*$", "", line)

    return code(install.group(1)), f"{code(mkdir.group(1))} && {code(link.group(1))}"


def test_man_finds_the_pages_after_the_readme_install(tmp_path: Path, original_environ: dict[str, str]) -> None:
    """Run the README's install (uv tool install from this checkout, offline from uv's cache) into a throwaway
    tool dir, then its man-page line: `man -w cordon` finds every page through PATH alone (man-db maps
    <dir>/bin on PATH to <dir>/share/man)."""
    if shutil.which("man") is None:
        pytest.skip("man (man-db) is not installed; .ci/run installs it")
    install_args, link_line = _readme_install_commands()
    bindir, tooldir = tmp_path / "bin", tmp_path / "tools"
    env = {**original_environ, "UV_TOOL_DIR": str(tooldir), "UV_TOOL_BIN_DIR": str(bindir),
           "HOME": str(tmp_path / "home"), "PATH": f"{bindir}:/usr/bin:/bin", "XDG_CONFIG_HOME": str(tmp_path / "x")}
    env.pop("MANPATH", None)
    found = shutil.which("uv", path=original_environ.get("PATH"))
    uv = [found] if found else ["python3", "-m", "uv"]  # the README's install: `python3 -m pip install uv`
    args = install_args.replace("/path/to/this/checkout", str(ROOT)).split()
    cache = subprocess.run([*uv, "cache", "dir"], capture_output=True, text=True, env=original_environ, timeout=60)
    env["UV_CACHE_DIR"] = cache.stdout.strip()  # the user's cache (HOME is a throwaway one here)
    done = subprocess.run([*uv, "tool", "install", "--offline", *args], capture_output=True, text=True,
                          timeout=300, env=env)
    if done.returncode != 0:
        pytest.skip(f"uv tool install could not run offline from uv's cache: {done.stderr.strip()[-300:]}")
    shell_line = link_line.replace("uv tool dir", " ".join(uv) + " tool dir")
    subprocess.run(["sh", "-c", shell_line], check=True, env=env, timeout=60)
    for prog in IDS:
        found = subprocess.run(["man", "-w", prog], capture_output=True, text=True, env=env, timeout=30)
        assert found.returncode == 0 and found.stdout.startswith(str(tmp_path)), (prog, found.stdout, found.stderr)
