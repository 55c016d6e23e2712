"""Proxy identity: proving that what listens on a scope's port is that scope's cordon before trusting it.

Each scope has a random key, ``<state_dir>/identity.key`` (32 bytes, 0600), made by setup and ``cordon start``
when missing. A client asks ``GET /health?nonce=<64 hex>&auth=<hex HMAC-SHA256(key, "cordon-client\\0" +
nonce)>``; the proxy always answers ``{"status": "ok", "proof": <hex HMAC-SHA256(key, "cordon-server\\0" +
nonce)>}`` and, only when ``auth`` verifies, adds what it is (``pid``, ``version``, ``routes``, ``config``,
``config_digest``, ``port``). Without a nonce ``/health`` says only ``{"status": "ok"}``.

:func:`probe` is the one way cordon's own tools look at a running proxy (``status``, ``wait``, ``run``,
``doctor``, ``stop``/``reload``, the service, the agent hooks): they send a token only after ``ours``. A proof
made with another known scope's key names that scope's cordon; anything else on the port is *foreign* and is
named by its process where the OS says. The proxy side (:func:`health_answer`) is pure. Stdlib only.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qs

from cordon_config.files import PrivateFileError, ensure_key_file, read_key_file
from cordon_config.proofs import client_auth, compare_digest, config_digest, health_target, server_proof
from cordon_config.scope import ScopePaths

__all__ = [
    "KEY_NAME",
    "IdentityError",
    "ProbeResult",
    "client_auth",
    "config_digest",
    "ensure_key",
    "health_answer",
    "health_target",
    "key_path",
    "load_key",
    "new_nonce",
    "probe",
    "server_proof",
]

KEY_NAME = "identity.key"
NONCE_RE = re.compile(r"[0-9a-f]{64}")
_MAX_ANSWER = 65536

Kind = Literal["ours", "other-scope", "foreign", "none"]


class IdentityError(Exception):
    """The identity key cannot be read or made (one line, plus the fix)."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


# -- the key ---------------------------------------------------------------------------------------------


def key_path(paths: ScopePaths) -> Path:
    """``<state_dir>/identity.key``."""
    return paths.state_dir / KEY_NAME


def _read_key(path: Path) -> bytes | None:
    try:
        return read_key_file(path, owner=False)
    except PrivateFileError as exc:
        if exc.kind == "damaged":
            raise IdentityError(f"{path} is not a cordon identity key ({exc.size} bytes)", f"remove it: rm {path}") \
                from None
        if exc.kind == "not-regular":
            raise IdentityError(f"{path} is not a regular file", f"remove it: rm {path}") from None
        if exc.kind == "loose":  # it may have been copied: whoever holds a copy passes the proof, so no chmod
            raise IdentityError(
                f"{path} is accessible by group or others (mode {exc.mode or 0:04o}); a copy of it would pass as "
                "this scope's cordon",
                f"replace it: stop this scope's cordon, rm {shlex.quote(str(path))}, and start it again "
                "(cordon start makes a new key)") from None
        raise IdentityError(f"cannot read {path}: {exc.strerror}",
                            f"remove it; cordon start makes a new one: rm {path}") from None


def load_key(paths: ScopePaths) -> bytes | None:
    """The scope's identity key, or None when it has none yet. Raises IdentityError for a broken file."""
    return _read_key(key_path(paths))


def ensure_key(paths: ScopePaths) -> bytes:
    """The scope's identity key, created (32 random bytes, 0600, never over a symlink) when missing."""
    path = key_path(paths)
    try:
        return ensure_key_file(path, _read_key)
    except FileNotFoundError:
        raise IdentityError(f"{path} vanished while it was being created", "run the command again") from None
    except OSError as exc:
        raise IdentityError(f"cannot create {path}: {exc.strerror}") from None


# -- the /health exchange (the MACs live in cordon_config.proofs, light enough for fast paths) ------------


def new_nonce() -> str:
    """64 random hex digits."""
    return secrets.token_hex(32)


def health_answer(key: bytes | None, query: str, details: Mapping[str, object]) -> dict[str, object] | None:
    """The proxy's ``/health`` answer for the query string ``query``; None when the query is malformed.

    No nonce: ``{"status": "ok"}``. A nonce: plus ``proof``; plus ``details`` only when ``auth`` verifies.
    """
    if not query:
        return {"status": "ok"}
    try:
        params = parse_qs(query, keep_blank_values=True, strict_parsing=True, max_num_fields=4)
    except ValueError:
        return None
    nonces, auths = params.get("nonce", []), params.get("auth", [])
    if len(nonces) != 1 or len(auths) > 1 or set(params) - {"nonce", "auth"} or not NONCE_RE.fullmatch(nonces[0]):
        return None
    nonce = nonces[0]
    if key is None:
        return {"status": "ok"}
    answer: dict[str, object] = {"status": "ok", "proof": server_proof(key, nonce)}
    if auths and compare_digest(auths[0].encode("ascii", "replace"), client_auth(key, nonce).encode("ascii")):
        answer.update(details)
    return answer


# -- the client side -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeResult:
    """What listens on a scope's port.

    ``kind``: ``ours`` (this scope's cordon; ``health`` holds its verified details), ``other-scope`` (another
    known scope's cordon: ``other_config``/``other_state_dir``), ``foreign`` (anything else: ``owner`` names the
    process where the OS says, ``detail`` what it answered), ``none`` (nothing listens). ``settled``: the answer
    proves the listener is not this scope's cordon, so waiting will not change it (another scope's proof, or an
    HTTP answer that this scope's key does not verify); not for a silent or non-HTTP peer, nor when this scope
    had no key yet to verify with.
    """

    kind: Kind
    port: int
    health: Mapping[str, object] = field(default_factory=dict)
    other_config: Path | None = None
    other_state_dir: Path | None = None
    owner: str | None = None
    detail: str = ""
    settled: bool = False

    @property
    def ours(self) -> bool:
        return self.kind == "ours"

    @property
    def pid(self) -> int | None:
        pid = self.health.get("pid")
        return pid if isinstance(pid, int) else None

    def message(self) -> str:
        """One line saying what holds the port."""
        port = self.port
        if self.kind == "ours":
            return f"cordon is running on 127.0.0.1:{port} (pid {self.pid})"
        if self.kind == "other-scope":
            where = str(self.other_config) if self.other_config else f"state dir {self.other_state_dir}"
            return f"another scope's cordon ({where}) holds port {port}"
        if self.kind == "foreign":
            owner = f" ({self.owner})" if self.owner else ""
            return f"port {port} is held by something that is not this scope's cordon{owner}"
        return f"cordon is not running on 127.0.0.1:{port}"

    def hint(self, config_path: Path, flag: str = "") -> str | None:
        """The fix for a port this scope cannot use (None for ``ours`` and ``none``)."""
        if self.kind == "other-scope":
            stop = f"cordon stop --config {self.other_config}" if self.other_config else "stop that proxy"
            return f"{stop}, or give this scope its own port (listen in {config_path})"
        if self.kind == "foreign":
            what = f"stop it ({self.owner})" if self.owner else "stop what listens there"
            return f"{what}, or give this scope another port (listen in {config_path})"
        return None


def _exchange(port: int, target: str, timeout: float) -> tuple[int, bytes] | None:
    """One ``GET target`` to 127.0.0.1:port: (status, body), or None when nothing accepts the connection.

    Raises ValueError when something accepts but does not answer like HTTP."""
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError:
        return None
    data = b""
    with sock:
        try:
            request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode("ascii"))
            while len(data) <= _MAX_ANSWER:
                head_end = data.find(b"\r\n\r\n")
                if head_end >= 0:
                    length = _content_length(data[:head_end])
                    if length is not None and len(data) - head_end - 4 >= length:
                        break
                chunk = sock.recv(16384)
                if not chunk:
                    break
                data += chunk
        except OSError as exc:
            if not data:
                raise ValueError(f"no HTTP answer ({exc.strerror or type(exc).__name__})") from None
    head, sep, body = data.partition(b"\r\n\r\n")
    parts = head.split(b" ", 2)
    if not sep or len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError("no HTTP answer")
    length = _content_length(head)
    return int(parts[1]), body[:length] if length is not None else body


def _content_length(head: bytes) -> int | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _other_scope(paths: ScopePaths, nonce: str, proof: str, env: Mapping[str, str] | None) -> ProbeResult | None:
    from cordon_config.scopes import known_scopes

    for scope in known_scopes(env):
        if scope.state_dir == paths.state_dir:
            continue
        try:
            key = _read_key(scope.state_dir / KEY_NAME)
        except IdentityError:
            continue
        if key is not None and compare_digest(proof, server_proof(key, nonce)):
            return ProbeResult("other-scope", 0, other_config=scope.config_path, other_state_dir=scope.state_dir)
    return None


def probe(
    paths: ScopePaths, port: int, timeout: float = 2.0, *, env: Mapping[str, str] | None = None
) -> ProbeResult:
    """What listens on 127.0.0.1:``port``: this scope's cordon (verified), another scope's, something else, or
    nothing. Sends no token, ever; raises IdentityError only for a broken key file of this scope."""
    key = load_key(paths)
    nonce = new_nonce()
    target = health_target(key, nonce) if key is not None else f"/health?nonce={nonce}"
    try:
        answer = _exchange(port, target, timeout)
    except ValueError as exc:
        return _foreign(port, str(exc))
    if answer is None:
        return ProbeResult("none", port)
    status, body = answer
    try:
        doc = json.loads(body) if status == 200 else None
    except ValueError:
        doc = None
    proof = doc.get("proof") if isinstance(doc, dict) else None
    if not isinstance(proof, str) or not re.fullmatch(r"[0-9a-f]{64}", proof):
        return _foreign(port, f"HTTP {status} without an identity proof (an impostor, or a cordon older than 0.2)",
                        settled=True)
    if key is not None and compare_digest(proof, server_proof(key, nonce)):
        assert isinstance(doc, dict)
        if doc.get("port") not in (None, port):  # a relay to this scope's cordon on another port
            return _foreign(port, f"a relay to this scope's cordon on port {doc.get('port')}", settled=True)
        return ProbeResult("ours", port, health=doc)
    other = _other_scope(paths, nonce, proof, env)
    if other is not None:
        return ProbeResult("other-scope", port, other_config=other.other_config, other_state_dir=other.other_state_dir,
                           settled=True)
    return _foreign(port, "an identity proof that no known scope's key verifies", settled=key is not None)


def _foreign(port: int, detail: str, *, settled: bool = False) -> ProbeResult:
    from cordon_config.portowner import port_owner

    owner = port_owner(port)
    return ProbeResult("foreign", port, owner=str(owner) if owner else None, detail=detail, settled=settled)
