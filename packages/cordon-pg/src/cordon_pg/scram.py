"""Password authentication math: MD5 and SCRAM-SHA-256 (RFC 5802, RFC 7677) with channel binding, sans-IO.

:class:`ScramClient` is cordon logging in to the real server (with ``tls-server-end-point`` channel binding when
the server offers ``SCRAM-SHA-256-PLUS``); :class:`ScramServer` is cordon checking a client's proxy token. Both
follow PostgreSQL's flavour: the SCRAM user name is empty (the StartupMessage names the user) and passwords are
SASLprep-normalised when that succeeds, used as raw bytes when it does not.

Failures raise :class:`ScramError`; its text never contains a password, a nonce or a proof.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import stringprep
import unicodedata
from collections.abc import Callable, Iterable

__all__ = [
    "CHANNEL_BINDING",
    "SCRAM",
    "SCRAM_PLUS",
    "ScramClient",
    "ScramError",
    "ScramServer",
    "md5_password",
    "saslprep",
    "server_end_point_hash",
]

SCRAM = "SCRAM-SHA-256"
SCRAM_PLUS = "SCRAM-SHA-256-PLUS"
CHANNEL_BINDING = "tls-server-end-point"
DEFAULT_ITERATIONS = 4096
_NONCE_BYTES = 18


class ScramError(Exception):
    """A SCRAM exchange failed (malformed message, wrong proof, server signature mismatch, ...)."""


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    """PostgreSQL's MD5 answer: ``"md5" + md5hex(md5hex(password + user) + salt)``."""
    inner = hashlib.md5(password.encode("utf-8") + user.encode("utf-8")).hexdigest()  # the protocol's hash
    return b"md5" + hashlib.md5(inner.encode("ascii") + salt).hexdigest().encode("ascii")


# -- SASLprep (RFC 4013) ------------------------------------------------------------------------------------

_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12, stringprep.in_table_c21_c22, stringprep.in_table_c3, stringprep.in_table_c4,
    stringprep.in_table_c5, stringprep.in_table_c6, stringprep.in_table_c7, stringprep.in_table_c8,
    stringprep.in_table_c9,
)


def saslprep(password: str) -> bytes:
    """The bytes PostgreSQL hashes for ``password``: SASLprep'd UTF-8, or the raw UTF-8 when SASLprep rejects it."""
    raw = password.encode("utf-8")
    if password.isascii() and all(0x20 <= ord(ch) < 0x7F for ch in password):
        return raw  # SASLprep leaves printable ASCII as it is
    mapped = "".join(" " if stringprep.in_table_c12(ch) else ch for ch in password
                     if not stringprep.in_table_b1(ch))
    normal = unicodedata.normalize("NFKC", mapped)
    if not normal:
        return raw
    if any(check(ch) for ch in normal for check in _PROHIBITED) or any(stringprep.in_table_a1(ch) for ch in normal):
        return raw
    bidi_ok = stringprep.in_table_d1(normal[0]) and stringprep.in_table_d1(normal[-1]) and not any(
        stringprep.in_table_d2(ch) for ch in normal)
    if any(stringprep.in_table_d1(ch) for ch in normal) and not bidi_ok:
        return raw
    return normal.encode("utf-8")


# -- shared pieces ------------------------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unb64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ScramError(f"{what} is not valid base64") from None


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def _attributes(text: str, what: str) -> dict[str, str]:
    """``a=1,b=2`` → ``{"a": "1", "b": "2"}`` (values may contain '='; an attribute is one letter)."""
    found: dict[str, str] = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ScramError(f"{what} is malformed")
        found.setdefault(part[0], part[2:])
    return found


def _nonce() -> str:
    return _b64(secrets.token_bytes(_NONCE_BYTES))


def salted_password(password: bytes, salt: bytes, iterations: int) -> bytes:
    """SaltedPassword = Hi(password, salt, i) (PBKDF2-HMAC-SHA-256)."""
    return hashlib.pbkdf2_hmac("sha256", password, salt, iterations)


def server_end_point_hash(certificate_der: bytes, signature_hash: str | None) -> bytes | None:
    """The ``tls-server-end-point`` channel binding data (RFC 5929 §4.1) of the server's certificate.

    ``signature_hash`` is the name of the certificate's signature hash (``"sha256"``, ``"sha384"``, ...);
    MD5 and SHA-1 are replaced by SHA-256; None (e.g. Ed25519) means no channel binding is possible.
    """
    if signature_hash is None:
        return None
    name = signature_hash.lower().replace("-", "")
    if name in ("md5", "sha1"):
        name = "sha256"
    try:
        return hashlib.new(name, certificate_der).digest()
    except ValueError:
        return None


# -- client -------------------------------------------------------------------------------------------------


class ScramClient:
    """cordon's side of SCRAM-SHA-256[-PLUS] towards the real server.

    ``binding`` is the server certificate's end-point hash when the connection is TLS, else None. With
    ``use_plus`` the exchange binds to it (``p=tls-server-end-point``); without, the GS2 flag says whether the
    client could have (``y``: a server that offers PLUS but was sent ``y`` is a downgrade, and refuses).
    """

    def __init__(self, password: str, *, binding: bytes | None, use_plus: bool,
                 salted: dict[tuple[bytes, bytes, int], bytes] | None = None) -> None:
        if use_plus and binding is None:
            raise ValueError("SCRAM-SHA-256-PLUS needs the channel binding data")
        self._password = saslprep(password)
        self._salted = salted
        self._binding = binding
        self.mechanism = SCRAM_PLUS if use_plus else SCRAM
        if use_plus:
            self._gs2 = f"p={CHANNEL_BINDING},,"
        else:
            self._gs2 = "y,," if binding is not None else "n,,"
        self._nonce = _nonce()
        self._first_bare = f"n=,r={self._nonce}"
        self._server_signature: bytes | None = None

    def __repr__(self) -> str:
        return f"ScramClient({self.mechanism})"

    def first(self) -> bytes:
        """client-first-message."""
        return (self._gs2 + self._first_bare).encode("ascii")

    def final(self, server_first: bytes) -> bytes:
        """client-final-message for ``server_first`` (raises ScramError when it is malformed or unsafe)."""
        try:
            text = server_first.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("server-first-message is not ASCII") from None
        attributes = _attributes(text, "server-first-message")
        nonce, salt_text, iterations_text = attributes.get("r"), attributes.get("s"), attributes.get("i")
        if nonce is None or salt_text is None or iterations_text is None:
            raise ScramError("server-first-message lacks the nonce, salt or iteration count")
        if not nonce.startswith(self._nonce) or len(nonce) == len(self._nonce):
            raise ScramError("server nonce does not extend the client nonce")
        if not iterations_text.isdigit() or not 1 <= int(iterations_text) <= 10_000_000:
            raise ScramError("iteration count is not a sane number")
        salt = _unb64(salt_text, "salt")
        salted = self._salted_password(salt, int(iterations_text))
        client_key = _hmac(salted, b"Client Key")
        stored_key = hashlib.sha256(client_key).digest()
        binding = self._gs2.encode("ascii") + (self._binding or b"" if self._gs2.startswith("p=") else b"")
        without_proof = f"c={_b64(binding)},r={nonce}"
        auth_message = f"{self._first_bare},{text},{without_proof}".encode("ascii")
        proof = _xor(client_key, _hmac(stored_key, auth_message))
        self._server_signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
        return f"{without_proof},p={_b64(proof)}".encode("ascii")

    def _salted_password(self, salt: bytes, iterations: int) -> bytes:
        """SaltedPassword, from ``salted`` when this password, salt and count were seen before: a server keeps one
        salt per role, so the PBKDF2 (thousands of HMACs) runs once per password, not once per login."""
        if self._salted is None:
            return salted_password(self._password, salt, iterations)
        key = (hashlib.sha256(self._password).digest(), salt, iterations)
        found = self._salted.get(key)
        if found is None:
            if len(self._salted) >= 64:
                self._salted.clear()
            found = self._salted[key] = salted_password(self._password, salt, iterations)
        return found

    def verify(self, server_final: bytes) -> None:
        """Check the server's signature (proves the server knew the password); raises ScramError."""
        if self._server_signature is None:
            raise ScramError("server-final-message before server-first-message")
        try:
            attributes = _attributes(server_final.decode("ascii"), "server-final-message")
        except UnicodeDecodeError:
            raise ScramError("server-final-message is not ASCII") from None
        if "e" in attributes:
            raise ScramError(f"the server refused the exchange ({attributes['e'][:60]})")
        signature = attributes.get("v")
        if signature is None or not hmac.compare_digest(_unb64(signature, "server signature"),
                                                        self._server_signature):
            raise ScramError("the server's SCRAM signature is wrong (it does not know the password)")


# -- server -------------------------------------------------------------------------------------------------


class ScramServer:
    """cordon's side of SCRAM-SHA-256 towards a client whose password must be one of ``candidates``.

    ``candidates`` are ``(name, password)`` pairs (the proxy tokens); ``salted`` caches SaltedPassword per
    password so each token costs one PBKDF2 per process, not per connection. ``binding`` (this side's
    certificate end-point hash) accepts ``SCRAM-SHA-256-PLUS`` clients and checks their binding data.
    """

    def __init__(self, candidates: Iterable[tuple[str, str]], *, salt: bytes, iterations: int = DEFAULT_ITERATIONS,
                 salted: dict[str, bytes] | None = None, binding: bytes | None = None) -> None:
        self._candidates = list(candidates)
        self._binding = binding
        self._salt = salt
        self._iterations = iterations
        self._salted = salted if salted is not None else {}
        self._first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._gs2 = ""

    def __repr__(self) -> str:
        return f"ScramServer({len(self._candidates)} candidates)"

    def first(self, client_first: bytes) -> bytes:
        """server-first-message for the client's first message."""
        try:
            text = client_first.decode("utf-8")
        except UnicodeDecodeError:
            raise ScramError("client-first-message is not UTF-8") from None
        if text.startswith(("n,", "y,")):
            flag_end = 1
        elif text.startswith(f"p={CHANNEL_BINDING},") and self._binding is not None:
            flag_end = len(CHANNEL_BINDING) + 2
        elif text.startswith("p="):
            raise ScramError("channel binding was requested but is not offered")
        else:
            raise ScramError("client-first-message has an invalid GS2 header")
        authzid_end = text.find(",", flag_end + 1)
        if authzid_end < 0 or authzid_end != flag_end + 1:
            raise ScramError("client-first-message has an authorization identity (not supported)")
        self._gs2 = text[: authzid_end + 1]
        self._first_bare = text[authzid_end + 1 :]
        attributes = _attributes(self._first_bare, "client-first-message")
        client_nonce = attributes.get("r")
        if "n" not in attributes or not client_nonce or "m" in attributes:
            raise ScramError("client-first-message lacks the user name or nonce")
        self._nonce = client_nonce + _nonce()
        self._server_first = f"r={self._nonce},s={_b64(self._salt)},i={self._iterations}"
        return self._server_first.encode("ascii")

    def final(self, client_final: bytes) -> tuple[bytes, str, str]:
        """(server-final-message, name and password of the matching candidate); raises ScramError when none
        matches."""
        try:
            text = client_final.decode("ascii")
        except UnicodeDecodeError:
            raise ScramError("client-final-message is not ASCII") from None
        without_proof, sep, proof_part = text.rpartition(",p=")
        if not sep:
            raise ScramError("client-final-message has no proof")
        attributes = _attributes(without_proof, "client-final-message")
        if attributes.get("r") != self._nonce:
            raise ScramError("client-final-message nonce does not match")
        expected = self._gs2.encode("utf-8") + (self._binding or b"" if self._gs2.startswith("p=") else b"")
        if _unb64(attributes.get("c", ""), "channel binding") != expected:
            raise ScramError("channel binding data does not match the GS2 header")
        proof = _unb64(proof_part, "proof")
        if len(proof) != hashlib.sha256().digest_size:
            raise ScramError("proof has the wrong length")
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        for name, password in self._candidates:
            salted = self._salted.get(password)
            if salted is None:
                salted = self._salted[password] = salted_password(saslprep(password), self._salt, self._iterations)
            stored_key = hashlib.sha256(_hmac(salted, b"Client Key")).digest()
            client_key = _xor(proof, _hmac(stored_key, auth_message))
            if hmac.compare_digest(hashlib.sha256(client_key).digest(), stored_key):
                signature = _hmac(_hmac(salted, b"Server Key"), auth_message)
                return f"v={_b64(signature)}".encode("ascii"), name, password
        raise ScramError("wrong password")
