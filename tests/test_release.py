"""Release metadata: independent versions, sibling ranges, command entry points, changelogs.

Reads the pyproject files as TOML (no build); `scripts/smoke_wheels.sh` checks the same ranges in the built
wheels' METADATA.
"""

from __future__ import annotations

import importlib
import re
import tomllib
from pathlib import Path

import pytest

from cordon.catalogue import KNOWN_COMMANDS, TOOL_DISTS

ROOT = Path(__file__).resolve().parents[1]
MEMBER_DIRS = sorted(p.parent for p in (ROOT / "packages").glob("*/pyproject.toml"))
PROJECTS = {"cordon": ROOT, **{d.name: d for d in MEMBER_DIRS}}
TEST_SUPPORT = "cordon-testing"  # a workspace member for tests only: a dev dependency, never shipped
_REQ = re.compile(r"^\s*([A-Za-z0-9._-]+)\s*(\[[^\]]*\])?\s*([^;]*)")


def _pyproject(project: Path) -> dict:
    return tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))


def _version(project: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in _pyproject(project)["project"]["version"].split(".")[:3])


def _parse_version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.strip().split("."))


def _sibling_requirements(project: Path) -> list[tuple[str, str]]:
    """(distribution, version specifier) for each requirement naming a workspace project."""
    found = []
    for req in _pyproject(project)["project"].get("dependencies", []):
        match = _REQ.match(req)
        assert match is not None, req
        name = match.group(1).lower().replace("_", "-")
        if name in PROJECTS:
            found.append((name, match.group(3).strip()))
    return found


def test_every_catalogue_tool_is_a_workspace_member() -> None:
    assert set(TOOL_DISTS) == {d.name for d in MEMBER_DIRS} - {TEST_SUPPORT}
    assert {c.dist for c in KNOWN_COMMANDS} <= set(TOOL_DISTS)


@pytest.mark.parametrize("name", sorted(set(PROJECTS) - {TEST_SUPPORT}))
def test_test_support_is_never_a_product_dependency(name: str) -> None:
    """cordon-testing (and trustme through it) only in dev groups: a product wheel never pulls test code in."""
    project = _pyproject(PROJECTS[name])["project"]
    extras = [req for reqs in project.get("optional-dependencies", {}).values() for req in reqs]
    for req in [*project.get("dependencies", []), *extras]:
        match = _REQ.match(req)
        assert match is not None, req
        assert match.group(1).lower().replace("_", "-") not in (TEST_SUPPORT, "trustme"), f"{name}: {req}"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_project_name_and_version(name: str) -> None:
    project = _pyproject(PROJECTS[name])["project"]
    assert project["name"] == name
    assert re.fullmatch(r"\d+\.\d+\.\d+", project["version"]), "versions are plain X.Y.Z"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_sibling_requirements_have_a_range_that_admits_the_sibling(name: str) -> None:
    """`cordon-config>=0.1,<0.2`: a lower bound, an upper bound, and the sibling's own version inside."""
    for sibling, spec in _sibling_requirements(PROJECTS[name]):
        clauses = dict(
            (m.group(1), _parse_version(m.group(2))) for m in re.finditer(r"(>=|<)\s*([\d.]+)", spec)
        )
        assert ">=" in clauses and "<" in clauses, f"{name}: {sibling}{spec} needs >=X,<Y"
        have = _version(PROJECTS[sibling])
        assert clauses[">="] <= have < clauses["<"], f"{name}: {sibling} {'.'.join(map(str, have))} not in {spec}"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_workspace_sources_cover_every_sibling(name: str) -> None:
    """Inside the workspace a sibling comes from its directory, never from an index."""
    sources = _pyproject(PROJECTS[name]).get("tool", {}).get("uv", {}).get("sources", {})
    for sibling, _ in _sibling_requirements(PROJECTS[name]):
        assert sources.get(sibling) == {"workspace": True}, f"{name}: [tool.uv.sources] {sibling} missing"


@pytest.mark.parametrize("dist", TOOL_DISTS)
def test_member_declares_an_entry_point_for_each_catalogue_command(dist: str) -> None:
    declared = _pyproject(PROJECTS[dist])["project"].get("entry-points", {}).get("cordon.commands", {})
    expected = {c.name for c in KNOWN_COMMANDS if c.dist == dist}
    assert expected <= set(declared), f"{dist} lacks cordon.commands entry points {sorted(expected - set(declared))}"
    extra = set(declared) - expected
    assert not extra, f"{dist} declares {sorted(extra)}, unknown to src/cordon/catalogue.py (cordon --help)"


@pytest.mark.parametrize("dist", TOOL_DISTS)
def test_entry_points_and_scripts_resolve(dist: str) -> None:
    project = _pyproject(PROJECTS[dist])["project"]
    targets = {**project.get("entry-points", {}).get("cordon.commands", {}), **project.get("scripts", {})}
    for name, target in targets.items():
        module, _, attr = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), f"{dist}: {name} = {target}"
    assert dist in project.get("scripts", {}), f"{dist} runs alone as `{dist}`"


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_module_version_matches_pyproject(name: str) -> None:
    module = importlib.import_module(name.replace("-", "_"))
    assert module.__version__ == _pyproject(PROJECTS[name])["project"]["version"]


@pytest.mark.parametrize("name", sorted(PROJECTS))
def test_changelog_has_the_current_version(name: str) -> None:
    changelog = PROJECTS[name] / "CHANGELOG.md"
    assert changelog.exists(), f"{changelog.relative_to(ROOT)} is missing"
    version = _pyproject(PROJECTS[name])["project"]["version"]
    assert re.search(rf"^## \[?{re.escape(version)}\]?", changelog.read_text(encoding="utf-8"), re.M), (
        f"{changelog.relative_to(ROOT)} has no '## {version}' section"
    )
