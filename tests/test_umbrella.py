"""The `cordon` umbrella: discovery from metadata, lazy imports, help, version, suggestions."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from importlib import metadata

import pytest

from cordon.catalogue import KNOWN_COMMANDS, TOOL_DISTS
from cordon.cli import main, render_help, run_command
from cordon.discover import Command, DuplicateCommand, discover, parse_entry_points


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cordon", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_help_lists_every_known_command_grouped_by_tool() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for dist in TOOL_DISTS:
        assert f"\n{dist} (" in result.stdout
    for cmd in KNOWN_COMMANDS:
        assert f"  {cmd.name} " in result.stdout
    assert "[missing" not in result.stdout  # everything is installed in the workspace
    assert "examples:" in result.stdout


_PROBE = """
import json, sys
from cordon.cli import main
before = set(sys.modules)
code = main({argv!r})
print(json.dumps({{"code": code, "modules": sorted(set(sys.modules))}}))
"""


def _modules_after(argv: list[str]) -> tuple[int, list[str]]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(argv=argv)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return data["code"], data["modules"]


def test_help_imports_no_third_party_module() -> None:
    code, modules = _modules_after(["--help"])
    assert code == 0
    third_party = {
        m.split(".")[0] for m in modules if m.split(".")[0] not in sys.stdlib_module_names
    } - {"cordon", "__main__", "_distutils_hack"}
    assert third_party == set(), f"cordon --help imported {sorted(third_party)}"


def test_version_imports_no_tool_and_lists_every_tool() -> None:
    code, modules = _modules_after(["--version"])
    assert code == 0
    assert not [m for m in modules if m.startswith("cordon_")]
    result = _run("--version")
    for dist in TOOL_DISTS:
        assert f"{dist} {metadata.version(dist)}" in result.stdout
    assert result.stdout.startswith("cordon ")


def test_running_a_command_imports_only_its_tool() -> None:
    code, modules = _modules_after(["ca", "--help"])
    assert code == 0
    tools = {m.split(".")[0] for m in modules if m.startswith("cordon_")}
    assert "cordon_ca" in tools
    assert not tools & {"cordon_proxy", "cordon_setup", "cordon_doctor"}


def test_unknown_command_exits_2_with_suggestion() -> None:
    result = _run("strat")
    assert result.returncode == 2
    assert result.stderr.strip() == "cordon: unknown command 'strat'. Did you mean 'cordon start'?"
    assert "Traceback" not in result.stderr


def test_unknown_option_exits_2() -> None:
    result = _run("--frobnicate")
    assert result.returncode == 2
    assert "unknown option" in result.stderr


def test_help_cmd_shows_that_commands_help() -> None:
    result = _run("help", "route")
    assert result.returncode == 0
    assert "usage: cordon route" in result.stdout


def test_discover_reads_metadata_without_loading() -> None:
    found = discover([("start", "no_such_module_xyz:main", "cordon-proxy", "9.9")])
    assert set(found) == {"start"}
    assert found["start"].target == "no_such_module_xyz:main"
    assert "no_such_module_xyz" not in sys.modules


def test_discover_agrees_with_importlib_metadata() -> None:
    """The fast dist-info scan finds exactly what importlib.metadata reports for the group."""
    expected = {
        ep.name: (ep.value, ep.dist.metadata["Name"], ep.dist.version)  # type: ignore[union-attr]
        for ep in metadata.entry_points(group="cordon.commands")
    }
    found = {c.name: (c.target, c.dist, c.version) for c in discover().values()}
    assert found == expected
    assert {c.name for c in KNOWN_COMMANDS} <= set(found)


def test_parse_entry_points_reads_only_the_group() -> None:
    text = "[console_scripts]\ncordon-ca = cordon_ca.cli:main\n\n[cordon.commands]\nca = cordon_ca.cli:main\n"
    assert parse_entry_points(text) == [("ca", "cordon_ca.cli:main")]


def test_distribution_names_are_normalised(tmp_path) -> None:
    (tmp_path / "cordon_ca-1.2.3.dist-info").mkdir()
    (tmp_path / "cordon_ca-1.2.3.dist-info" / "entry_points.txt").write_text("[cordon.commands]\nca = m:f\n")
    found = discover(search_path=[str(tmp_path)])
    assert found["ca"].dist == "cordon-ca" and found["ca"].version == "1.2.3"


def test_duplicate_command_from_two_distributions_is_an_error() -> None:
    with pytest.raises(DuplicateCommand, match="declared by both dist-a and dist-b"):
        discover([("start", "a:main", "dist-a", "1"), ("start", "b:main", "dist-b", "2")])


def test_help_marks_missing_tool_with_install_hint() -> None:
    installed = {c.name: Command(c.name, "x:y", c.dist, "0.1.0") for c in KNOWN_COMMANDS if c.dist != "cordon-proxy"}
    out = io.StringIO()
    render_help(installed, out, version_of=lambda d: None if d == "cordon-proxy" else "0.1.0")
    text = out.getvalue()
    assert "cordon-proxy (not installed):" in text
    assert "  start        run the proxy in the foreground  [missing: pip install cordon-proxy" in text
    assert "  route " in text and "[missing: pip install cordon-config" not in text


def test_missing_tool_command_names_the_package(capsys: pytest.CaptureFixture[str]) -> None:
    code = run_command("start", [], {})
    assert code == 3
    assert "needs cordon-proxy, which is not installed; install it with: pip install cordon-proxy" in capsys.readouterr().err


def test_no_arguments_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert "usage: cordon" in capsys.readouterr().out


@pytest.mark.e2e
def test_help_in_an_environment_missing_tools(tmp_path, original_environ) -> None:
    """A real venv with only the umbrella and cordon-config: --help names the packages to install."""
    import shutil
    from pathlib import Path

    uv = shutil.which("uv")
    if uv is None:
        pytest.skip("uv is not on PATH")
    root = Path(__file__).resolve().parents[1]
    env = dict(original_environ)  # uv needs the real HOME (its cache) and the registry's CA settings
    venv = tmp_path / "venv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True, timeout=120, env=env)
    python = venv / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), "--no-deps", str(root)], check=True, timeout=300, env=env
    )
    subprocess.run(
        [uv, "pip", "install", "-q", "--python", str(python), str(root / "packages" / "cordon-config")],
        check=True,
        timeout=300,
        env=env,
    )
    result = subprocess.run(
        [str(python), "-m", "cordon", "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    assert "cordon-proxy (not installed):" in result.stdout
    assert "[missing: pip install cordon-proxy" in result.stdout
    assert "[missing: pip install cordon-config" not in result.stdout
    start = subprocess.run(
        [str(python), "-m", "cordon", "start"], capture_output=True, text=True, timeout=60, check=False
    )
    assert start.returncode == 3
    assert "install it with: pip install cordon-proxy" in start.stderr


def test_help_about_help_and_help_for_a_subcommand() -> None:
    result = _run("help", "--help")
    assert result.returncode == 0 and result.stdout.startswith("usage: cordon help [COMMAND [SUBCOMMAND...]]")
    assert "cordon help route add" in result.stdout
    sub = _run("help", "route", "add")
    assert sub.returncode == 0 and sub.stdout.startswith("usage: cordon route add ")
    assert "--header-name" in sub.stdout  # the subcommand's options, not `cordon route`'s list of actions


@pytest.mark.parametrize(("argv", "expected"), [
    (["rout"], "cordon: unknown command 'rout'. Did you mean 'cordon route'?"),
    (["halt"], "cordon: unknown command 'halt'. Run 'cordon --help' for the list."),  # not a typo of anything
    (["--hepl"], "cordon: unknown option '--hepl'. Did you mean '--help'? Run 'cordon --help'."),
    (["route", "lst"], "did you mean 'list'?"),
    (["route", "add", "--nmae", "x"], "did you mean --name?"),
])
def test_suggestions_for_typos_only(argv: list[str], expected: str) -> None:
    result = _run(*argv)
    assert result.returncode == 2 and expected in result.stderr and result.stderr.count("\n") == 1


def test_a_reader_that_goes_away_does_not_stop_the_command(tmp_path) -> None:
    """stdout closed early: the writes stop, the command goes on and exits 0 (no `Broken pipe`)."""
    import os

    code = ("import os, sys\nfrom cordon.cli import main\nr, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\n"
            "sys.exit(main(['--help']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0 and done.stderr == ""
