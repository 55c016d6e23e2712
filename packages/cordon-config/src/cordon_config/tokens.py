"""Proxy tokens: ``tokens.toml`` (0600) with named random tokens and constant-time verification.

File layout::

    # cordon proxy tokens: keep this file private (mode 0600)
    [tokens.default]
    value = "<43 url-safe characters>"
    created = 2026-11-23T22:00:00Z
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re
import secrets
import stat
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cordon_config.files import atomic_write, locked

TOKEN_NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
_HEADER = "# cordon proxy tokens: keep this file private (mode 0600). Values are never printed by `cordon token`.\n"


class TokenError(ValueError):
    """tokens.toml is unreadable or invalid, or a token name is bad / unknown."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token's public facts (never its value)."""

    name: str
    created: datetime


_PLAIN_USER = re.compile(r"[\x20-\x24\x26-\x39\x3b-\x7e]*")  # printable ASCII without '%' and ':'


def proxy_user(namespace: str) -> str:
    """The user part of the proxy URL for a scope (before the URL's own percent-encoding): its namespace, or,
    when the namespace holds a ``:``, a ``%`` or anything beyond printable ASCII (``Projé``), the namespace
    percent-encoded as UTF-8.

    Clients differ with such a user: Python requests encodes Basic credentials as Latin-1 (and fails beyond
    it), git decodes the URL twice. With the encoded form in the URL, curl, Python and Node send it as it is
    (plain ASCII) and git sends the namespace itself; :meth:`TokenStore.verify` accepts both.
    """
    if _PLAIN_USER.fullmatch(namespace):
        return namespace
    from urllib.parse import quote

    return quote(namespace, safe="")


def parse_proxy_authorization(value: str | None) -> tuple[str, str] | None:
    """``(user, password)`` from a ``Basic base64(user:password)`` header value; None when malformed."""
    if not value or not isinstance(value, str):
        return None
    scheme, _, credentials = value.strip().partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "basic" or not credentials or " " in credentials:
        return None
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep:
        return None
    return user, password


def new_token_value() -> str:
    """32 random bytes, url-safe base64 without padding."""
    return secrets.token_urlsafe(32)


class TokenStore:
    """The named tokens of one scope, backed by ``tokens.toml``. Every change is locked and atomic."""

    def __init__(self, path: str | os.PathLike[str], tokens: dict[str, tuple[str, datetime]] | None = None):
        self.path = Path(path)
        self._tokens: dict[str, tuple[str, datetime]] = dict(tokens or {})

    # -- reading -----------------------------------------------------------------------------------------
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> TokenStore | None:
        """The store at ``path``, or None when the file does not exist.

        Raises :class:`TokenError` when the file is invalid or accessible by group or others.
        """
        path = Path(path)
        tokens = _read(path)
        return None if tokens is None else cls(path, tokens)

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> TokenStore:
        """The store at ``path`` (even when its mode is too open: the next change rewrites it 0600); empty
        (and not yet written) when the file does not exist."""
        path = Path(path)
        return cls(path, _read(path, check_mode=False) or {})

    def names(self) -> list[str]:
        """Token names in file order."""
        return list(self._tokens)

    def info(self) -> list[TokenInfo]:
        """Name and creation time of every token (never the values)."""
        return [TokenInfo(name, created) for name, (_, created) in self._tokens.items()]

    def __contains__(self, name: object) -> bool:
        return name in self._tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def __repr__(self) -> str:
        return f"TokenStore({str(self.path)!r}, names={self.names()!r})"

    def value(self, name: str) -> str:
        """The token's value (for writing an integration's proxy URL; never print it)."""
        try:
            return self._tokens[name][0]
        except KeyError:
            raise TokenError(f"no token named {name!r} in {self.path}") from None

    def verify(self, proxy_authorization: str | None, namespace: str) -> str | None:
        """The name of the token that ``Basic base64(namespace:token)`` carries, or None (constant time).

        The user part may be the namespace or :func:`proxy_user`'s form of it (clients decode the proxy URL
        once or twice); a namespace with a ``:`` arrives split at it (RFC 7617), so the whole ``user:password``
        is compared.
        """
        parsed = parse_proxy_authorization(proxy_authorization)
        if parsed is None:
            return None
        given = ":".join(parsed).encode("utf-8")
        forms = {namespace, proxy_user(namespace)}
        found: str | None = None
        for name, (value, _) in self._tokens.items():
            for form in forms:
                if hmac.compare_digest(given, f"{form}:{value}".encode()) and found is None:
                    found = name
        return found

    # -- changing ----------------------------------------------------------------------------------------
    def ensure(self, name: str) -> str:
        """The value of token ``name``, creating it (and the file, 0600) when missing."""
        _check_name(name)
        self._update(lambda tokens: tokens.setdefault(name, (new_token_value(), _now())))
        return self.value(name)

    def rotate(self, name: str) -> str:
        """Give ``name`` a new value (creating it if missing); returns the new value."""
        _check_name(name)

        def change(tokens: dict[str, tuple[str, datetime]]) -> None:
            tokens[name] = (new_token_value(), _now())

        self._update(change)
        return self.value(name)

    def revoke(self, name: str) -> bool:
        """Delete token ``name``; False when there was no such token."""
        removed: list[bool] = []
        self._update(lambda tokens: removed.append(tokens.pop(name, None) is not None))
        return removed[0]

    def _update(self, change: Callable[[dict[str, tuple[str, datetime]]], Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with locked(self.path):
            tokens = _read(self.path, check_mode=False) or {}  # the rewrite below makes it 0600 again
            before = dict(tokens)
            change(tokens)
            if tokens != before or not self.path.exists():
                atomic_write(self.path, _render(tokens), mode=0o600)
            self._tokens = tokens


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not TOKEN_NAME_RE.fullmatch(name):
        raise TokenError(f"token name {name!r} is not valid: use lower-case letters, digits, '.', '_' and '-'")


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _read(path: Path, *, check_mode: bool = True) -> dict[str, tuple[str, datetime]] | None:
    try:
        with open(path, "rb") as handle:
            mode = stat.S_IMODE(os.fstat(handle.fileno()).st_mode)
            raw = handle.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise TokenError(f"cannot read {path}: {exc.strerror}") from None
    if check_mode and mode & 0o077:
        raise TokenError(f"{path} is accessible by group or others (mode {mode:04o}); run chmod 600 {path} "
                         "(or `cordon token rotate --all`, which rewrites it 0600 with new values)")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise TokenError(f"{path} is not UTF-8 text") from None
    try:
        data = tomllib.loads(text)  # reading needs no round trip: stdlib, and fast for the proxy's re-reads
    except tomllib.TOMLDecodeError as exc:
        raise TokenError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("tokens", {})
    if not isinstance(table, dict):
        raise TokenError(f"{path}: [tokens] must be a table")
    tokens: dict[str, tuple[str, datetime]] = {}
    for name, entry in table.items():
        value = entry.get("value") if isinstance(entry, dict) else None
        created = entry.get("created") if isinstance(entry, dict) else None
        if not isinstance(value, str) or not value:
            raise TokenError(f"{path}: token {name!r} has no value")
        if not isinstance(created, datetime):
            created = datetime.fromtimestamp(0, UTC)
        tokens[name] = (value, created)
    return tokens


def _render(tokens: dict[str, tuple[str, datetime]]) -> str:
    import tomlkit  # only writers pay for it

    document = tomlkit.document()
    document.add(tomlkit.comment(_HEADER.strip()[2:]))
    table = tomlkit.table(is_super_table=True)
    for name, (value, created) in tokens.items():
        entry = tomlkit.table()
        entry.add("value", value)
        entry.add("created", created)
        table.add(name, entry)
    document.add("tokens", table)
    return tomlkit.dumps(document)

