"""Proxy tokens as database passwords: the client leg's :class:`~cordon_pg.session.TokenCheck` over tokens.toml.

The final word on a token is the running proxy's own ``verify`` (the one that checks ``Proxy-Authorization``), so
whatever rules it applies apply here too. SCRAM needs the token values themselves to check a proof: they are
read from tokens.toml again whenever the file changes (the last good set is kept when it breaks).
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from cordon_config.tokens import TokenStore

from cordon_pg.scram import ScramServer

__all__ = ["ProxyTokens"]


class ProxyTokens:
    """``verify(password) -> token name | None`` and ``scram()`` for one scope."""

    def __init__(self, path: Path, namespace: str, verify: Callable[[str], str | None]) -> None:
        self.path = Path(path)
        self.namespace = namespace
        self._verify = verify
        self._salt = secrets.token_bytes(16)  # one per process: SaltedPassword is computed once per token
        self._salted: dict[str, bytes] = {}
        self._stamp: tuple[int, int, int] | None = None
        self._candidates: list[tuple[str, str]] = []

    def verify(self, password: str) -> str | None:
        """The token's name when ``password`` is a valid proxy token (as the HTTP proxy judges it), else None."""
        credentials = base64.b64encode(f"{self.namespace}:{password}".encode()).decode("ascii")
        return self._verify(f"Basic {credentials}")

    def scram(self) -> ScramServer:
        """A SCRAM-SHA-256 server over the tokens in tokens.toml now."""
        self._reload()
        return ScramServer(self._candidates, salt=self._salt, salted=self._salted)

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            store = TokenStore.load(self.path)
        except Exception:  # half-written or insecure: keep the last good set
            return
        if store is None:
            return
        self._stamp = stamp
        self._candidates = [(name, store.value(name)) for name in store.names()]
        values = {value for _, value in self._candidates}
        for value in list(self._salted):
            if value not in values:
                del self._salted[value]
