"""The error an integration raises when it cannot be planned, applied or undone (one line and a hint)."""

from __future__ import annotations


class IntegrationError(RuntimeError):
    """An integration cannot be planned or undone (one line; ``hint`` says what to do)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint
