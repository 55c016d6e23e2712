"""The result of one doctor check: ok / warn / fail, a one-line message and, when not ok, the exact fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["ok", "warn", "fail", "skip"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail", "skip")


@dataclass(frozen=True, slots=True)
class Finding:
    """One line of the doctor report.

    ``check`` is a stable dotted identifier (``ca.key``, ``route.openai.secret``); ``fix`` is a command to run
    or a file to edit, present for every ``warn``/``fail``. ``skip`` means the check could not run because an
    earlier one failed (its message says which).
    """

    check: str
    status: Status
    message: str
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")

    def as_dict(self) -> dict[str, str | None]:
        """The JSON form (see docs/doctor.md: ``cordon doctor --json``)."""
        return {"check": self.check, "status": self.status, "message": self.message, "fix": self.fix}


def ok(check: str, message: str) -> Finding:
    return Finding(check, "ok", message)


def warn(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "warn", message, fix)


def fail(check: str, message: str, fix: str | None) -> Finding:
    return Finding(check, "fail", message, fix)


def skip(check: str, message: str) -> Finding:
    return Finding(check, "skip", message)
