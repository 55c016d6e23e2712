"""The PostgreSQL frontend/backend protocol (version 3) as bytes in, values out: no networking code at all.

Two framings exist. Before the session starts, the client sends *startup packets*: ``Int32 length`` (itself
included) then ``Int32 code`` (``SSLRequest``, ``GSSENCRequest``, ``CancelRequest`` or a protocol version for a
``StartupMessage``). After that every message is ``Byte1 type`` + ``Int32 length`` (itself included, the type
not) + body. :class:`StartupReader` and :class:`MessageReader` cut a byte stream into these; the ``parse_*`` and
builder functions read and write the few message bodies cordon needs during the handshake. After the handshake
cordon relays bytes without parsing them.

Errors: :class:`ProtocolError` (the peer sent something malformed or too large); its text names the problem and
never contains the bytes themselves.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "CANCEL_REQUEST",
    "GSSENC_REQUEST",
    "MAX_STARTUP_PACKET",
    "PROTOCOL_3_0",
    "SSL_REQUEST",
    "AuthRequest",
    "CancelRequest",
    "GSSENCRequest",
    "Message",
    "MessageReader",
    "ProtocolError",
    "SSLRequest",
    "StartupMessage",
    "StartupReader",
    "authentication",
    "backend_key_data",
    "cancel_request",
    "error_response",
    "message",
    "parse_authentication",
    "parse_backend_key_data",
    "parse_error_fields",
    "parse_password",
    "parse_sasl_initial_response",
    "password_message",
    "sasl_initial_response",
    "sasl_response",
    "ssl_request",
    "startup_message",
]

PROTOCOL_3_0 = 3 << 16  # 196608
SSL_REQUEST = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST = 80877102  # 1234 << 16 | 5678
MAX_STARTUP_PACKET = 10000  # the server's own limit (MAX_STARTUP_PACKET_LENGTH)
MAX_CANCEL_KEY = 256  # protocol 3.2 allows cancel keys of up to 256 bytes

# Authentication request codes (the Int32 after an 'R' message's length)
AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_HEAD = struct.Struct("!cI")


class ProtocolError(Exception):
    """The peer broke the protocol; the message is safe to log (it never quotes the peer's bytes)."""


# -- startup packets ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """The client asks for TLS before its StartupMessage."""


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption (cordon always declines)."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel the query running on the backend ``pid`` whose secret key is ``key``."""

    pid: int
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """Protocol ``version`` (major << 16 | minor) and the parameters (``user``, ``database``, ...), in order."""

    version: int
    parameters: tuple[tuple[str, str], ...]

    def get(self, name: str) -> str | None:
        """The value of parameter ``name`` (the last one when repeated), or None."""
        value = None
        for key, item in self.parameters:
            if key == name:
                value = item
        return value


StartupPacket = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


class StartupReader:
    """Cuts one startup packet off the front of a buffer (``feed`` bytes, then ``next()``)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) >= 4 and not 8 <= _U32.unpack_from(self.buffer)[0] <= MAX_STARTUP_PACKET:
            raise ProtocolError("invalid length of startup packet")

    def next(self) -> StartupPacket | None:
        """The next complete packet, or None until more bytes arrive."""
        if len(self.buffer) < 8:
            return None
        length = _U32.unpack_from(self.buffer)[0]
        if len(self.buffer) < length:
            return None
        body = bytes(self.buffer[4:length])
        del self.buffer[:length]
        return parse_startup_packet(body)

    def take_rest(self) -> bytes:
        """Whatever follows the packets read so far (bytes a client must not send yet, after an SSLRequest)."""
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest


def parse_startup_packet(body: bytes) -> StartupPacket:
    """A startup packet's body (everything after its length word)."""
    code = _U32.unpack_from(body)[0]
    if code == SSL_REQUEST:
        if len(body) != 4:
            raise ProtocolError("SSLRequest with a body")
        return SSLRequest()
    if code == GSSENC_REQUEST:
        if len(body) != 4:
            raise ProtocolError("GSSENCRequest with a body")
        return GSSENCRequest()
    if code == CANCEL_REQUEST:
        if not 12 <= len(body) <= 8 + MAX_CANCEL_KEY:
            raise ProtocolError("CancelRequest of the wrong length")
        return CancelRequest(_U32.unpack_from(body, 4)[0], bytes(body[8:]))
    if code >> 16 != 3:
        raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}")
    return StartupMessage(code, tuple(_parameters(body[4:])))


def _parameters(body: bytes) -> Iterable[tuple[str, str]]:
    if not body.endswith(b"\0"):
        raise ProtocolError("StartupMessage is not terminated")
    pairs: list[tuple[str, str]] = []
    position, end = 0, len(body) - 1
    while position < end:
        name_end = body.find(b"\0", position)
        value_end = body.find(b"\0", name_end + 1) if name_end >= 0 else -1
        if name_end == position:
            raise ProtocolError("StartupMessage has an empty parameter name")
        if value_end < 0 or value_end >= end:
            raise ProtocolError("StartupMessage has a parameter without a value")
        try:
            pairs.append((body[position:name_end].decode("utf-8"), body[name_end + 1 : value_end].decode("utf-8")))
        except UnicodeDecodeError:
            raise ProtocolError("StartupMessage parameters are not UTF-8") from None
        position = value_end + 1
    return pairs


def startup_message(parameters: Iterable[tuple[str, str]], version: int = PROTOCOL_3_0) -> bytes:
    """A StartupMessage packet."""
    body = _U32.pack(version) + b"".join(_cstr(k) + _cstr(v) for k, v in parameters) + b"\0"
    return _U32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    """An SSLRequest packet."""
    return _U32.pack(8) + _U32.pack(SSL_REQUEST)


def cancel_request(pid: int, key: bytes) -> bytes:
    """A CancelRequest packet."""
    return _U32.pack(12 + len(key)) + _U32.pack(CANCEL_REQUEST) + _U32.pack(pid) + key


# -- regular messages ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Message:
    """One message: its type byte and body (the length word dropped). ``raw`` is the whole message."""

    type: bytes
    body: bytes = field(repr=False)

    @property
    def raw(self) -> bytes:
        return message(self.type, self.body)


class MessageReader:
    """Cuts typed messages off a byte stream; refuses any message longer than ``max_length``."""

    def __init__(self, max_length: int) -> None:
        self.max_length = max_length
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> Message | None:
        """The next complete message, or None until more bytes arrive."""
        if len(self.buffer) < 5:
            return None
        kind, length = _HEAD.unpack_from(self.buffer)
        if length < 4:
            raise ProtocolError("message length is below 4")
        if length > self.max_length:
            raise ProtocolError(f"message of {length} bytes is over the handshake limit of {self.max_length}")
        end = 1 + length
        if len(self.buffer) < end:
            return None
        body = bytes(self.buffer[5:end])
        del self.buffer[:end]
        return Message(kind, body)

    def take_rest(self) -> bytes:
        """The bytes not yet cut into messages (handed to the relay when the handshake ends)."""
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest


def message(kind: bytes, body: bytes = b"") -> bytes:
    """One typed message."""
    return kind + _U32.pack(len(body) + 4) + body


def _cstr(text: str) -> bytes:
    data = text.encode("utf-8")
    if b"\0" in data:
        raise ValueError("a protocol string cannot contain NUL")
    return data + b"\0"


def _read_cstr(body: bytes, start: int) -> tuple[str, int]:
    end = body.find(b"\0", start)
    if end < 0:
        raise ProtocolError("string is not NUL-terminated")
    try:
        return body[start:end].decode("utf-8"), end + 1
    except UnicodeDecodeError:
        raise ProtocolError("string is not UTF-8") from None


# -- authentication -----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """An 'R' message: ``code`` (AUTH_*) and its data (MD5 salt, SASL mechanisms or SASL data)."""

    code: int
    data: bytes = field(default=b"", repr=False)
    mechanisms: tuple[str, ...] = ()


def parse_authentication(body: bytes) -> AuthRequest:
    """The body of an 'R' message."""
    if len(body) < 4:
        raise ProtocolError("authentication request is too short")
    code = _I32.unpack_from(body)[0]
    data = body[4:]
    if code == AUTH_MD5:
        if len(data) != 4:
            raise ProtocolError("MD5 authentication request without a 4-byte salt")
        return AuthRequest(code, data)
    if code == AUTH_SASL:
        names: list[str] = []
        position = 0
        while True:
            name, position = _read_cstr(data, position)
            if not name:
                break
            names.append(name)
        if position != len(data):
            raise ProtocolError("SASL mechanism list has trailing bytes")
        return AuthRequest(code, b"", tuple(names))
    if code in (AUTH_OK, AUTH_CLEARTEXT) and data:
        raise ProtocolError("authentication request has unexpected data")
    return AuthRequest(code, data)


def authentication(code: int, data: bytes = b"", mechanisms: Iterable[str] = ()) -> bytes:
    """An 'R' message (for the client leg, where cordon is the server)."""
    body = _I32.pack(code) + data
    if code == AUTH_SASL:
        body += b"".join(_cstr(name) for name in mechanisms) + b"\0"
    return message(b"R", body)


def password_message(password: bytes) -> bytes:
    """A PasswordMessage ('p') carrying a cleartext or MD5 password."""
    return message(b"p", password + b"\0")


def parse_password(body: bytes) -> bytes:
    """The password of a PasswordMessage (NUL dropped)."""
    if not body.endswith(b"\0") or b"\0" in body[:-1]:
        raise ProtocolError("password message is not one NUL-terminated string")
    return body[:-1]


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    """A SASLInitialResponse ('p')."""
    return message(b"p", _cstr(mechanism) + _I32.pack(len(data)) + data)


def parse_sasl_initial_response(body: bytes) -> tuple[str, bytes]:
    """(mechanism, initial data) of a SASLInitialResponse."""
    mechanism, position = _read_cstr(body, 0)
    if len(body) < position + 4:
        raise ProtocolError("SASLInitialResponse is too short")
    length = _I32.unpack_from(body, position)[0]
    data = body[position + 4 :]
    if length == -1:
        length = 0
    if length != len(data):
        raise ProtocolError("SASLInitialResponse length does not match its data")
    return mechanism, data


def sasl_response(data: bytes) -> bytes:
    """A SASLResponse ('p')."""
    return message(b"p", data)


# -- session start ------------------------------------------------------------------------------------------


def parse_backend_key_data(body: bytes) -> tuple[int, bytes]:
    """(pid, secret key) of a BackendKeyData ('K'); the key is 4 bytes in protocol 3.0, up to 256 in 3.2."""
    if not 8 <= len(body) <= 4 + MAX_CANCEL_KEY:
        raise ProtocolError("BackendKeyData of the wrong length")
    return _U32.unpack_from(body)[0], bytes(body[4:])


def backend_key_data(pid: int, key: bytes) -> bytes:
    """A BackendKeyData message."""
    return message(b"K", _U32.pack(pid) + key)


def parse_error_fields(body: bytes) -> dict[str, str]:
    """The fields of an ErrorResponse or NoticeResponse: ``{"S": severity, "C": code, "M": message, ...}``."""
    fields: dict[str, str] = {}
    position = 0
    while position < len(body):
        code = body[position : position + 1]
        if code == b"\0":
            return fields
        text, position = _read_cstr(body, position + 1)
        fields[code.decode("latin-1")] = text
    raise ProtocolError("error fields are not terminated")


def error_response(fields: Mapping[str, str]) -> bytes:
    """An ErrorResponse ('E') with ``fields`` (``S`` and ``V`` severity, ``C`` SQLSTATE, ``M`` message, ...)."""
    body = b"".join(code.encode("ascii") + _cstr(text) for code, text in fields.items()) + b"\0"
    return message(b"E", body)
