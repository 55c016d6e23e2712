"""Proxy-token checks that follow ``tokens.toml`` while the proxy runs (spec §4).

The file is re-read when it changes (checked at most once a second), so ``cordon token rotate`` takes effect
without a restart. Once tokens were on, deleting or breaking the file does not turn them off: the last good
set stays in force until restart.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from cordon_config.tokens import TokenStore

__all__ = ["TokenGate"]

CHECK_EVERY = 1.0


class TokenGate:
    """``verify(proxy_authorization_value) -> token name | None`` for one scope's namespace."""

    def __init__(self, path: Path, namespace: str, store: TokenStore, *, check_every: float = CHECK_EVERY) -> None:
        self.path = Path(path)
        self.check_every = check_every
        self.namespace = namespace
        self.store = store
        self._stamp = self._stat()
        self._checked = time.monotonic()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < self.check_every:
            return
        self._checked = now
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return
        try:
            store = TokenStore.load(self.path)
        except Exception:  # a half-written or insecure file: keep the last good tokens
            return
        if store is not None:
            self.store = store
            self._stamp = stamp

    def verify(self, value: str) -> str | None:
        """The name of the valid token in ``value`` (a Proxy-Authorization value), or None."""
        self._refresh()
        return self.store.verify(value, self.namespace)
