"""Find installed cordon commands from entry-point metadata, without importing any tool."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata

GROUP = "cordon.commands"


@dataclass(frozen=True, slots=True)
class Command:
    """An installed command: its name, the entry point to load and the distribution that declared it."""

    name: str
    target: str
    dist: str
    version: str
    entry_point: metadata.EntryPoint | None = None


class DuplicateCommand(Exception):
    """Two distributions declare the same command name."""


def discover(entry_points: Iterable[metadata.EntryPoint] | None = None) -> dict[str, Command]:
    """Map command name to Command for every ``cordon.commands`` entry point; reads metadata only."""
    eps = metadata.entry_points(group=GROUP) if entry_points is None else entry_points
    found: dict[str, Command] = {}
    for ep in eps:
        dist = getattr(ep, "dist", None)
        dist_name = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        if ep.name in found and found[ep.name].dist != dist_name:
            raise DuplicateCommand(
                f"command {ep.name!r} is declared by both {found[ep.name].dist} and {dist_name}"
            )
        found[ep.name] = Command(ep.name, ep.value, dist_name, version, ep)
    return found


def installed_version(dist: str) -> str | None:
    """The installed version of a distribution, or None when it is not installed."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None
