"""Proxy-token checks that follow ``tokens.toml`` while the proxy runs.

The file is re-checked at most every :data:`CHECK_EVERY` seconds (by :meth:`TokenGate.verify` and by the
proxy's watcher, which then closes what a changed file no longer allows), so ``cordon token rotate`` and
``revoke`` take effect without a restart, on connections already open too. Once tokens were on, deleting or
breaking the file does not turn them off: the last good set stays in force until restart. A file that group or
others can read is refused (every token answers 407 until ``chmod 600``), as it is at start and at reload.
"""

from __future__ import annotations

import hashlib
import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

from cordon_config.tokens import TokenError, TokenStore

__all__ = ["CHECK_EVERY", "TokenGate", "TokenName"]

CHECK_EVERY = 0.5


class TokenName(str):
    """A token's name as :meth:`TokenGate.verify` found it, carrying which value it had then (a rotation keeps
    the name and changes the value)."""

    __slots__ = ("fingerprint",)
    fingerprint: str | None

    def __new__(cls, name: str, fingerprint: str | None) -> TokenName:
        self = super().__new__(cls, name)
        self.fingerprint = fingerprint
        return self


def insecure_message(path: Path, mode: int) -> str:
    """The one wording of "tokens.toml is readable by others", with its fix."""
    return (f"{path} is accessible by group or others (mode {mode:04o}): every proxy token is refused until "
            f"you run chmod 600 {path}")


class TokenGate:
    """``verify(proxy_authorization_value) -> token name | None`` for one scope's namespace.

    ``fingerprint(name)`` identifies the value a name has now; ``valid(name, fingerprint)`` says whether a
    connection authenticated with it may go on. ``log`` gets ``(level, message)`` for a refused file.
    """

    def __init__(
        self,
        path: Path,
        namespace: str,
        store: TokenStore,
        *,
        check_every: float = CHECK_EVERY,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self.path = Path(path)
        self.check_every = check_every
        self.namespace = namespace
        self.store = store
        self.log = log or (lambda level, message: None)
        self.insecure: str | None = None  # why every token is refused right now (None: the file is fine)
        self.generation = 0  # bumped whenever what is accepted changes
        self._stamp = self._stat()
        self._checked = time.monotonic()
        self._prints = self._fingerprints(store)

    def _stat(self) -> tuple[int, int, int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino, st.st_mode)

    @staticmethod
    def _fingerprints(store: TokenStore) -> dict[str, str]:
        return {name: hashlib.sha256(store.value(name).encode()).hexdigest()[:32] for name in store.names()}

    def refresh(self, *, force: bool = False) -> bool:
        """Re-check the file (at most every ``check_every`` s unless ``force``); True when what is accepted
        changed."""
        now = time.monotonic()
        if not force and now - self._checked < self.check_every:
            return False
        self._checked = now
        stamp = self._stat()
        if stamp is None or stamp == self._stamp:
            return False
        self._stamp = stamp
        mode = stat.S_IMODE(stamp[4])
        if mode & 0o077:
            if self.insecure is None:
                self.insecure = insecure_message(self.path, mode)
                self.log("error", self.insecure)
                self.generation += 1
                return True
            return False
        try:
            store = TokenStore.load(self.path)
        except (TokenError, OSError):  # a half-written file: keep the last good tokens
            return False
        was_insecure, self.insecure = self.insecure, None
        if was_insecure:
            self.log("info", f"{self.path} is private again: proxy tokens accepted")
        if store is None:
            return bool(was_insecure)
        prints = self._fingerprints(store)
        self.store = store
        if prints == self._prints and not was_insecure:
            return False
        self._prints = prints
        self.generation += 1
        return True

    def verify(self, value: str) -> str | None:
        """The name of the valid token in ``value`` (a Proxy-Authorization value; a :class:`TokenName`), or
        None. The file is re-checked first, so a token revoked a moment ago is refused here."""
        self.refresh(force=True)
        if self.insecure is not None:
            return None
        name = self.store.verify(value, self.namespace)
        return None if name is None else TokenName(name, self._prints.get(name))

    def replace(self, store: TokenStore) -> None:
        """Use ``store`` (just loaded, mode checked, by a reload)."""
        prints = self._fingerprints(store)
        self.store, self.insecure = store, None
        self._stamp = self._stat()
        if prints != self._prints:
            self._prints = prints
            self.generation += 1

    def still_valid(self, name: str) -> bool:
        """A connection authenticated as ``name`` (as :meth:`verify` returned it) may be served further (the file
        is re-checked first: one ``stat``)."""
        self.refresh(force=True)
        return self.valid(name, getattr(name, "fingerprint", None))

    def fingerprint(self, name: str) -> str | None:
        """What identifies the value ``name`` has now (None when there is no such token)."""
        return self._prints.get(name)

    def valid(self, name: str, fingerprint: str | None) -> bool:
        """A connection authenticated as ``name`` when it had ``fingerprint`` may still be served."""
        return self.insecure is None and fingerprint is not None and self._prints.get(name) == fingerprint
