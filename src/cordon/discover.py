"""Find installed cordon commands from entry-point metadata, without importing any tool.

``importlib.metadata`` costs ~30 ms to import (email, zipfile, csv …), more than the whole start-up budget
of ``cordon --help``, so this module reads the one file it needs itself: every ``*.dist-info`` directory on
``sys.path`` holds ``entry_points.txt`` (an INI file) and carries the distribution's name and version in its
own name (``cordon_ca-0.1.0.dist-info``). The first distribution found on the path wins, as in
``importlib.metadata``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # `typing` (and the `re` and `enum` it imports) would triple the start-up time
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

GROUP = "cordon.commands"


class Command:
    """An installed command: its name, the ``module:attr`` to load and the distribution that declared it."""

    __slots__ = ("dist", "name", "target", "version")

    def __init__(self, name: str, target: str, dist: str, version: str) -> None:
        self.name, self.target, self.dist, self.version = name, target, dist, version

    def __repr__(self) -> str:
        return f"Command({self.name!r}, {self.target!r}, {self.dist!r}, {self.version!r})"

    def load(self) -> Callable[..., Any]:
        """Import the command's module and return its entry function (the only import of a tool)."""
        module_name, _, attr = self.target.partition(":")
        # __import__, not importlib.import_module: the `importlib` package costs more than a fast command
        obj: Any = __import__(module_name.strip(), fromlist=["_"])
        for part in attr.strip().split("."):
            obj = getattr(obj, part)
        return obj  # type: ignore[no-any-return]


class Distribution:
    """An installed distribution as seen from its ``.dist-info`` directory."""

    __slots__ = ("name", "path", "version")

    def __init__(self, name: str, version: str, path: str) -> None:
        self.name, self.version, self.path = name, version, path


class DuplicateCommand(Exception):
    """Two distributions declare the same command name."""


def normalize(name: str) -> str:
    """PEP 503 normalisation: ``cordon_ca`` and ``Cordon.CA`` both become ``cordon-ca`` (no `re`: start-up)."""
    out = name.lower().replace("_", "-").replace(".", "-")
    while "--" in out:
        out = out.replace("--", "-")
    return out


def distributions(search_path: Iterable[str] | None = None) -> dict[str, Distribution]:
    """Every distribution with a ``.dist-info`` directory on ``search_path`` (default ``sys.path``)."""
    found: dict[str, Distribution] = {}
    for entry in sys.path if search_path is None else search_path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if not name.endswith(".dist-info"):
                continue
            stem = name[: -len(".dist-info")]
            dist_name, _, version = stem.partition("-")
            key = normalize(dist_name)
            if key not in found:
                found[key] = Distribution(key, version, os.path.join(entry or ".", name))
    return found


def parse_entry_points(text: str, group: str = GROUP) -> list[tuple[str, str]]:
    """The ``(name, value)`` pairs of one group in an ``entry_points.txt``."""
    pairs: list[tuple[str, str]] = []
    current = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1].strip()
            continue
        if current == group and "=" in line:
            name, _, value = line.partition("=")
            pairs.append((name.strip(), value.strip()))
    return pairs


def discover(
    entry_points: Iterable[tuple[str, str, str, str]] | None = None,
    *,
    search_path: Iterable[str] | None = None,
) -> dict[str, Command]:
    """Map command name to Command for every ``cordon.commands`` entry point; reads metadata only.

    ``entry_points`` (tests) gives ``(name, value, dist, version)`` tuples instead of scanning the path.
    """
    if entry_points is None:
        entry_points = _scan(search_path)
    found: dict[str, Command] = {}
    for name, value, dist, version in entry_points:
        if name in found and found[name].dist != dist:
            raise DuplicateCommand(f"command {name!r} is declared by both {found[name].dist} and {dist}")
        found[name] = Command(name, value, dist, version)
    return found


def _scan(search_path: Iterable[str] | None) -> list[tuple[str, str, str, str]]:
    result = []
    for dist in distributions(search_path).values():
        try:
            with open(os.path.join(dist.path, "entry_points.txt"), encoding="utf-8") as handle:
                text = handle.read()
        except OSError:
            continue
        result += [(name, value, dist.name, dist.version) for name, value in parse_entry_points(text)]
    return result


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    found = distributions().get(normalize(dist))
    return found.version if found else None
