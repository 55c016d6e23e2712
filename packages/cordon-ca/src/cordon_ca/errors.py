"""Errors raised by cordon_ca: one-line message plus an optional hint (the fix to run)."""

from __future__ import annotations


class CAError(Exception):
    """Base class: ``str(err)`` is one line saying what is wrong; ``err.hint`` says how to fix it (or None)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class CANotFound(CAError):
    """The CA certificate or key file does not exist."""


class CAKeyInsecure(CAError):
    """The CA key file is readable by group/others, owned by someone else, or not a regular file."""


class CAInvalid(CAError):
    """The CA files exist but are unusable (not PEM, not a CA, key does not match the certificate...)."""


class HostNotAllowed(CAError):
    """A leaf was requested for a host outside the allowed or name-constrained set (or an invalid host)."""


class BundleError(CAError):
    """The combined CA bundle could not be built (no system trust store found, unreadable CA...)."""


class TrustError(CAError):
    """Adding/removing the CA to/from the OS trust store failed or needs privilege."""

    def __init__(self, message: str, hint: str | None = None, *, commands: list[str] | None = None) -> None:
        super().__init__(message, hint)
        self.commands = list(commands or [])
