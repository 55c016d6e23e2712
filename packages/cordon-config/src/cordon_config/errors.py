"""Errors of cordon-config: a config report with every problem, and edit/lookup failures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with a cordon.toml: where (file, line, item, key), what, and how to fix it.

    ``route`` labels the ``[[routes]]`` or ``[[listeners]]`` item the problem is in (``kind`` says which).
    """

    file: Path
    line: int | None
    route: str | None
    key: str | None
    message: str
    hint: str | None = None
    kind: str = "route"

    def __str__(self) -> str:
        where = str(self.file) + (f":{self.line}" if self.line else "")
        parts = [where]
        if self.route:
            parts.append(f"{self.kind} {self.route}")
        if self.key:
            parts.append(self.key)
        text = ": ".join(parts) + ": " + self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text


class ConfigError(ValueError):
    """A cordon.toml that cannot be used. ``.problems`` lists every problem found, in file order."""

    def __init__(self, path: Path, problems: Iterable[ConfigProblem]):
        self.path = Path(path)
        self.problems: tuple[ConfigProblem, ...] = tuple(problems)
        super().__init__(self._report())

    def _report(self) -> str:
        count = len(self.problems)
        if count == 1:
            return str(self.problems[0])
        head = f"{self.path} has {count} problems:"
        return "\n".join([head, *(str(problem) for problem in self.problems)])

    @property
    def first_line(self) -> str:
        """A one-line summary (for ``cordon: ...`` messages)."""
        if len(self.problems) == 1:
            return str(self.problems[0]).split("\n", 1)[0]
        return f"{self.path} has {len(self.problems)} problems (first: {self.problems[0].message})"


class ConfigNotFound(ConfigError):
    """The config file does not exist."""


class RouteNotFound(KeyError):
    """No route with that name."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)
        super().__init__(name)

    def __str__(self) -> str:
        return f"no route named {self.name!r} in {self.path}"


class ListenerNotFound(KeyError):
    """No listener with that name."""

    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = Path(path)
        super().__init__(name)

    def __str__(self) -> str:
        return f"no listener named {self.name!r} in {self.path}"
