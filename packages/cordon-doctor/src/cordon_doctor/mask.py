"""Masking of secret values for display: enough to recognise a value, never enough to use it."""

from __future__ import annotations

SENSITIVE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie", "set-cookie", "x-goog-api-key"}
)
_SCHEMES = ("bearer", "basic", "token", "digest")


def mask_secret(value: str, *, prefix: int = 4) -> str:
    """``sk-d…(36 chars)``: the first ``prefix`` characters (none for short values) and the length."""
    if len(value) < 16:
        return f"…({len(value)} chars)"
    return f"{value[:prefix]}…({len(value)} chars)"


def mask_header_value(value: str) -> str:
    """Mask a credential header value, keeping a leading auth scheme (``Bearer sk-d…(36 chars)``)."""
    scheme, sep, rest = value.partition(" ")
    if sep and scheme.lower() in _SCHEMES and rest:
        return f"{scheme} {mask_secret(rest)}"
    return mask_secret(value)
