"""One proxied PostgreSQL connection as a state machine: ``Session(settings).handle(event) -> [command]``.

Sans-IO (no asyncio, socket, ssl, os or time): the edge (``server.py``) feeds bytes and outcomes in as
:mod:`~cordon_pg.events` and performs the commands that come out. The phases:

1. **client startup**: answer ``SSLRequest`` per ``client_tls`` (``S`` then TLS, or ``N``), decline
   ``GSSENCRequest``, hand a ``CancelRequest`` to the edge, check the ``StartupMessage`` (protocol 3, TLS when
   required, ``user`` = the configured user).
2. **client auth** (only when proxy tokens are on): the client's password must be a proxy token, asked in
   cleartext inside TLS or by SCRAM-SHA-256 otherwise.
3. **upstream**: fetch the password and connect (in parallel); ``SSLRequest`` + verify-full TLS unless
   ``upstream_tls = "disable"``; the client's StartupMessage with the configured user; answer the server's
   cleartext, MD5 or SCRAM-SHA-256[-PLUS] request; check the server's SCRAM signature.
4. **ready**: collect ``ParameterStatus``, ``BackendKeyData`` (replaced by a key of cordon's own),
   notices, until ``ReadyForQuery``; send the client ``AuthenticationOk`` and those; then ``StartRelay``.

Errors the client sees are cordon's own ``ErrorResponse`` (``cordon: listener "NAME": ...``, SQLSTATE 28000 for
the client's mistakes, 28P01 when a password is rejected, 08001/08006 when cordon cannot reach or trust the
server). The server's error text is passed on only outside class 28, and never with the password in it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from cordon_pg import protocol as pq
from cordon_pg.events import (
    ClientClosed,
    ClientData,
    ClientTLSReady,
    Close,
    ConnectUpstream,
    Failed,
    FetchSecret,
    ForwardCancel,
    InvalidateSecret,
    Log,
    SecretReady,
    SendClient,
    SendUpstream,
    StartClientTLS,
    StartRelay,
    StartUpstreamTLS,
    UpstreamClosed,
    UpstreamConnected,
    UpstreamData,
    UpstreamTLSReady,
)
from cordon_pg.scram import SCRAM, SCRAM_PLUS, ScramClient, ScramError, ScramServer, md5_password

__all__ = ["Session", "Settings", "TokenCheck"]

Command = Any
HANDSHAKE_LIMIT = 64 * 1024  # bytes a client may send before its session is relayed
UPSTREAM_MESSAGE_LIMIT = 1024 * 1024  # largest single server message accepted during the handshake

# SQLSTATEs cordon answers with
INVALID_AUTHORIZATION = "28000"
INVALID_PASSWORD = "28P01"
CANNOT_CONNECT = "08001"
CONNECTION_FAILURE = "08006"
PROTOCOL_VIOLATION = "08P01"


class TokenCheck(Protocol):
    """How a session checks a client's proxy token (implemented by the edge over tokens.toml)."""

    def verify(self, password: str) -> str | None:
        """The token's name when ``password`` is a valid proxy token, else None."""

    def scram(self) -> ScramServer:
        """A SCRAM-SHA-256 server whose candidates are the current tokens."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What one listener needs to know for every connection."""

    listener: str
    username: str
    upstream: str  # "host:port", for messages
    client_tls: str = "accept"  # accept | require | disable
    upstream_tls: str = "verify-full"  # verify-full | disable
    allow_cleartext: bool = True  # may the password go to the upstream in cleartext (TLS, or a loopback server)
    tokens: TokenCheck | None = None
    random_bytes: Callable[[int], bytes] = field(default=secrets.token_bytes, repr=False)
    # SaltedPassword per (password digest, salt, iterations), shared by the listener's sessions
    scram_cache: dict[tuple[bytes, bytes, int], bytes] = field(default_factory=dict, repr=False)


class HandshakeFailure(Exception):
    """Stop the handshake: send the client this error, log it, close."""

    def __init__(self, code: str, message: str, hint: str | None = None, *, log: str | None = None,
                 level: str = "warn") -> None:
        super().__init__(message)
        self.code, self.message, self.hint, self.log, self.level = code, message, hint, log or message, level


class Session:
    """The handshake of one client connection; after :class:`StartRelay` it has nothing more to do."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.state = "startup"
        self.client_tls = False
        self.startup: pq.StartupMessage | None = None
        self.token: str | None = None
        self.token_value: str | None = None  # the proxy token itself, so the edge can re-check it later
        self._startup_reader = pq.StartupReader()
        self._client = pq.MessageReader(HANDSHAKE_LIMIT)
        self._upstream = pq.MessageReader(UPSTREAM_MESSAGE_LIMIT)
        self._client_bytes = 0
        self._secret: Any = None
        self._pending_auth: pq.AuthRequest | None = None
        self._connected = False
        self._upstream_tls = False
        self._binding: bytes | None = None
        self._scram_client: ScramClient | None = None
        self._scram_server: ScramServer | None = None
        self._scram_started = False
        self._scram_verified = False
        self._for_client: list[bytes] = []
        self._backend: tuple[int, bytes] | None = None
        self._client_key: bytes | None = None

    # -- entry point ---------------------------------------------------------------------------------------
    def handle(self, event: object) -> list[Command]:
        """Advance with ``event``; return the commands for the edge, in order."""
        if self.state in ("relay", "closed"):
            return []
        out: list[Command] = []
        try:
            out.extend(self._dispatch(event))  # commands yielded before a refusal still happen (InvalidateSecret)
        except HandshakeFailure as refused:
            out += self._refuse(refused)
        except pq.ProtocolError as exc:
            out += self._refuse(HandshakeFailure(PROTOCOL_VIOLATION, f"protocol violation: {exc}", log=f"protocol: {exc}"))
        return out

    def _dispatch(self, event: object) -> Iterator[Command]:
        if isinstance(event, ClientData):
            yield from self._client_data(event.data)
        elif isinstance(event, ClientTLSReady):
            self.client_tls = True
            self.state = "startup"
            yield Log("debug", "client TLS ready")
        elif isinstance(event, SecretReady):
            self._secret = event.secret
            if self._pending_auth is not None:
                request, self._pending_auth = self._pending_auth, None
                yield from self._answer(request)
        elif isinstance(event, UpstreamConnected):
            self._connected = True
            if self.settings.upstream_tls == "verify-full":
                self.state = "upstream-ssl"
                yield SendUpstream(pq.ssl_request())
            else:
                yield from self._send_startup()
        elif isinstance(event, UpstreamTLSReady):
            self._upstream_tls = True
            self._binding = event.binding
            yield from self._send_startup()
        elif isinstance(event, UpstreamData):
            yield from self._upstream_data(event.data)
        elif isinstance(event, Failed):
            yield from self._failed(event)
        elif isinstance(event, UpstreamClosed) and self._connected:
            raise HandshakeFailure(CONNECTION_FAILURE, f"the server at {self.settings.upstream} closed the "
                                   "connection during the login", "see the server's log for why",
                                   log="upstream closed during the handshake")
        elif isinstance(event, ClientClosed | UpstreamClosed):
            side = "client" if isinstance(event, ClientClosed) else "upstream"
            self.state = "closed"
            yield Close(f"{side} closed during the handshake")
        else:
            raise TypeError(f"unknown event {event!r}")

    # -- client --------------------------------------------------------------------------------------------
    def _client_data(self, data: bytes) -> Iterator[Command]:
        self._client_bytes += len(data)
        if self._client_bytes > HANDSHAKE_LIMIT:
            raise HandshakeFailure(PROTOCOL_VIOLATION, "the client sent too much before the session started")
        if self.state == "startup":
            self._startup_reader.feed(data)
            yield from self._startup_packets()
        elif self.state == "client-auth":
            self._client.feed(data)
            yield from self._client_auth()
        elif self.state == "client-tls":
            raise HandshakeFailure(PROTOCOL_VIOLATION, "unencrypted data during the TLS handshake")
        else:
            self._client.feed(data)  # kept for the relay: clients may pipeline after their startup

    def _startup_packets(self) -> Iterator[Command]:
        while self.state == "startup":
            packet = self._startup_reader.next()
            if packet is None:
                return
            if isinstance(packet, pq.SSLRequest | pq.GSSENCRequest):
                if self._startup_reader.take_rest():  # CVE-2021-23214: nothing may follow before the answer
                    raise HandshakeFailure(PROTOCOL_VIOLATION, "received unencrypted data after an encryption request")
                if isinstance(packet, pq.GSSENCRequest) or self.client_tls or self.settings.client_tls == "disable":
                    yield SendClient(b"N")
                    continue
                self.state = "client-tls"
                yield SendClient(b"S")
                yield StartClientTLS()
            elif isinstance(packet, pq.CancelRequest):
                self.state = "closed"
                yield ForwardCancel(packet.pid, packet.key)
                yield Close("cancel request")
            else:
                self._client.feed(self._startup_reader.take_rest())
                yield from self._startup_message(packet)

    def _startup_message(self, startup: pq.StartupMessage) -> Iterator[Command]:
        listener = self.settings.listener
        if self.settings.client_tls == "require" and not self.client_tls:
            raise HandshakeFailure(INVALID_AUTHORIZATION, "this listener requires TLS (client_tls = \"require\")",
                                   "connect with sslmode=require (or verify-full with the cordon CA as sslrootcert)")
        user = startup.get("user")
        if user != self.settings.username:
            given = f'user "{user}"' if user else "no user name"
            raise HandshakeFailure(INVALID_AUTHORIZATION, f"{given} given; listener \"{listener}\" logs in as "
                                   f'"{self.settings.username}" only', f"connect with user={self.settings.username}",
                                   log=f"refused: {given} (the listener logs in as {self.settings.username})")
        self.startup = startup
        tokens = self.settings.tokens
        if tokens is None:
            yield from self._connect()
            return
        self.state = "client-auth"
        if self.client_tls:
            yield SendClient(pq.authentication(pq.AUTH_CLEARTEXT))
        else:
            self._scram_server = tokens.scram()
            yield SendClient(pq.authentication(pq.AUTH_SASL, mechanisms=[SCRAM]))
        yield from self._client_auth()

    def _client_auth(self) -> Iterator[Command]:
        tokens = self.settings.tokens
        assert tokens is not None
        bad_token = HandshakeFailure(INVALID_PASSWORD, "the password is not a valid proxy token of this cordon",
                                     "use a token from tokens.toml as the password (`cordon env` prints it as PGPASSWORD)",
                                     log="refused: the client's password is not a valid proxy token")
        while self.state == "client-auth":
            reply = self._client.next()
            if reply is None:
                return
            if reply.type != b"p":
                raise HandshakeFailure(PROTOCOL_VIOLATION, "expected a password message")
            if self._scram_server is None:
                password = pq.parse_password(reply.body)
                try:
                    name = tokens.verify(password.decode("utf-8"))
                except UnicodeDecodeError:
                    name = None
                if name is None:
                    raise bad_token
                self.token, self.token_value = name, password.decode("utf-8")
                yield from self._connect()
            elif not self._scram_started:
                mechanism, data = pq.parse_sasl_initial_response(reply.body)
                if mechanism != SCRAM:
                    raise HandshakeFailure(PROTOCOL_VIOLATION, f"SASL mechanism {mechanism[:40]!r} was not offered")
                try:
                    answer = self._scram_server.first(data)
                except ScramError as exc:
                    raise HandshakeFailure(PROTOCOL_VIOLATION, f"SCRAM: {exc}") from None
                self._scram_started = True
                yield SendClient(pq.authentication(pq.AUTH_SASL_CONTINUE, answer))
            else:
                try:
                    answer, name, scram_password = self._scram_server.final(reply.body)
                except ScramError:
                    raise bad_token from None
                confirmed = tokens.verify(scram_password)
                if confirmed is None:
                    raise bad_token
                self.token, self.token_value = confirmed, scram_password
                yield SendClient(pq.authentication(pq.AUTH_SASL_FINAL, answer))
                yield from self._connect()

    # -- upstream ------------------------------------------------------------------------------------------
    def _connect(self) -> Iterator[Command]:
        self.state = "upstream-connect"
        yield Log("debug", "connecting to the upstream", {"token": self.token})
        yield FetchSecret()
        yield ConnectUpstream()

    def _send_startup(self) -> Iterator[Command]:
        assert self.startup is not None
        params = [(k, v) for k, v in self.startup.parameters if k != "user"]
        self.state = "upstream-auth"
        yield SendUpstream(pq.startup_message([("user", self.settings.username), *params], self.startup.version))

    def _upstream_data(self, data: bytes) -> Iterator[Command]:
        if self.state == "upstream-ssl":
            answer, rest = data[:1], data[1:]
            if answer == b"S":
                if rest:  # CVE-2021-23222: bytes injected before the TLS handshake
                    raise HandshakeFailure(CONNECTION_FAILURE, f"the server at {self.settings.upstream} sent unencrypted "
                                           "data after agreeing to TLS", log="upstream sent data after 'S'")
                self.state = "upstream-tls"
                yield StartUpstreamTLS()
                return
            if answer == b"N":
                raise HandshakeFailure(CANNOT_CONNECT, f"the server at {self.settings.upstream} does not offer TLS, and "
                                       'upstream_tls is "verify-full"', 'enable ssl on the server, or set upstream_tls = '
                                       '"disable" for this listener (plain TCP, only on a network you trust)')
            raise HandshakeFailure(CANNOT_CONNECT, f"the server at {self.settings.upstream} did not answer the TLS request "
                                   "like PostgreSQL", "check that upstream names a PostgreSQL server")
        if self.state not in ("upstream-auth", "upstream-ready"):
            raise HandshakeFailure(CONNECTION_FAILURE, "the server sent data out of turn")
        self._upstream.feed(data)
        while self.state in ("upstream-auth", "upstream-ready"):
            message = self._upstream.next()
            if message is None:
                return
            if self.state == "upstream-auth":
                yield from self._upstream_auth(message)
            else:
                yield from self._upstream_ready(message)

    def _upstream_auth(self, message: pq.Message) -> Iterator[Command]:
        if message.type == b"R":
            request = pq.parse_authentication(message.body)
            if request.code == pq.AUTH_OK:
                if self._scram_client is not None and not self._scram_verified:
                    raise HandshakeFailure(CONNECTION_FAILURE, f"the server at {self.settings.upstream} ended SCRAM without "
                                           "proving it knows the password", log="upstream skipped the SCRAM final message")
                self.state = "upstream-ready"
                return
            if self._secret is None and request.code != pq.AUTH_SASL_FINAL:
                self._pending_auth = request
                return
            yield from self._answer(request)
        elif message.type == b"E":
            yield from self._upstream_error(message, during_auth=True)
        elif message.type == b"v":
            self._for_client.append(message.raw)  # NegotiateProtocolVersion: the client must see it
        elif message.type == b"N":
            return  # notices before the login are not passed on
        else:
            raise HandshakeFailure(CONNECTION_FAILURE, "the server sent an unexpected message during authentication")

    def _answer(self, request: pq.AuthRequest) -> Iterator[Command]:
        name = self.settings.listener
        password = self._secret.reveal() if self._secret is not None else ""
        if request.code == pq.AUTH_CLEARTEXT:
            if not self.settings.allow_cleartext:
                raise HandshakeFailure(CANNOT_CONNECT, f"the server at {self.settings.upstream} asks for the password in "
                                       "cleartext over an unencrypted connection; cordon does not send it",
                                       'use upstream_tls = "verify-full", or scram-sha-256 in the server\'s pg_hba.conf')
            yield SendUpstream(pq.password_message(password.encode("utf-8")))
        elif request.code == pq.AUTH_MD5:
            yield SendUpstream(pq.password_message(md5_password(self.settings.username, password, request.data)))
        elif request.code == pq.AUTH_SASL:
            plus = self._binding is not None and SCRAM_PLUS in request.mechanisms
            if not plus and SCRAM not in request.mechanisms:
                offered = ", ".join(m[:40] for m in request.mechanisms[:5]) or "none"
                raise HandshakeFailure(CANNOT_CONNECT, f"the server offers SASL mechanisms cordon does not speak ({offered})",
                                       "use scram-sha-256, md5 or password in the server's pg_hba.conf")
            self._scram_client = ScramClient(password, binding=self._binding if self._upstream_tls else None,
                                             use_plus=plus, salted=self.settings.scram_cache)
            yield Log("debug", "upstream SASL", {"mechanism": self._scram_client.mechanism})
            yield SendUpstream(pq.sasl_initial_response(self._scram_client.mechanism, self._scram_client.first()))
        elif request.code == pq.AUTH_SASL_CONTINUE:
            if self._scram_client is None:
                raise HandshakeFailure(CONNECTION_FAILURE, "the server sent SCRAM data out of turn")
            try:
                yield SendUpstream(pq.sasl_response(self._scram_client.final(request.data)))
            except ScramError as exc:
                raise HandshakeFailure(CONNECTION_FAILURE, f"SCRAM with the server failed: {exc}") from None
        elif request.code == pq.AUTH_SASL_FINAL:
            if self._scram_client is None:
                raise HandshakeFailure(CONNECTION_FAILURE, "the server sent SCRAM data out of turn")
            try:
                self._scram_client.verify(request.data)
            except ScramError as exc:
                raise HandshakeFailure(CONNECTION_FAILURE, f"the server at {self.settings.upstream} failed SCRAM: {exc}",
                                       "the server is not the one holding this password: check upstream and the network",
                                       log=f"upstream SCRAM verification failed: {exc}") from None
            self._scram_verified = True
        else:
            method = {pq.AUTH_KERBEROS_V5: "Kerberos", pq.AUTH_GSS: "GSSAPI", pq.AUTH_SSPI: "SSPI"}.get(
                request.code, f"code {request.code}")
            raise HandshakeFailure(CANNOT_CONNECT, f"the server asks for {method} authentication, which listener "
                                   f'"{name}" does not speak', "use scram-sha-256, md5 or password for this user in the "
                                   "server's pg_hba.conf")

    def _upstream_ready(self, message: pq.Message) -> Iterator[Command]:
        if message.type == b"K":
            pid, key = pq.parse_backend_key_data(message.body)
            self._backend = (pid, key)
            self._client_key = self.settings.random_bytes(len(key))
            self._for_client.append(pq.backend_key_data(pid, self._client_key))
        elif message.type == b"E":
            yield from self._upstream_error(message, during_auth=False)
        elif message.type == b"Z":
            self.state = "relay"
            hello = pq.authentication(pq.AUTH_OK) + b"".join(self._for_client) + message.raw
            self._for_client.clear()
            yield Log("debug", "session ready", {"token": self.token})
            yield SendClient(hello)
            yield StartRelay(self._client.take_rest(), self._upstream.take_rest(), self._backend, self._client_key,
                             self.token)
        else:  # ParameterStatus, NoticeResponse, NegotiateProtocolVersion, ...: the client sees them as they are
            self._for_client.append(self._scrub(message.raw))

    def _upstream_error(self, message: pq.Message, *, during_auth: bool) -> Iterator[Command]:
        fields = pq.parse_error_fields(message.body)
        code = fields.get("C", "")
        upstream = self.settings.upstream
        if code.startswith("28") or (during_auth and not code):
            self._pending_auth = None
            yield InvalidateSecret()
            raise HandshakeFailure(INVALID_PASSWORD, f"the server at {upstream} rejected the login as "
                                   f'"{self.settings.username}" (SQLSTATE {code or "none"})',
                                   f"update the password of listener \"{self.settings.listener}\" in its secret source "
                                   "(e.g. `cordon secret set "
                                   f"{self.settings.listener}`), check that the user may connect, then reconnect",
                                   log=f"upstream login failed (SQLSTATE {code or 'none'}); the cached password was dropped")
        text = self._scrub_text(fields.get("M", "an error without a message"))[:300]
        raise HandshakeFailure(code or CONNECTION_FAILURE, f"the server at {upstream} refused the session: {text}",
                               log=f"upstream refused the session (SQLSTATE {code or 'none'})", level="info")

    def _failed(self, event: Failed) -> Iterator[Command]:
        listener = self.settings.listener
        if event.stage == "client-tls":
            self.state = "closed"
            yield Log("info", f"client TLS handshake failed: {event.reason}")
            yield Close("client TLS failed")
            return
        if event.stage == "secret":
            raise HandshakeFailure(CANNOT_CONNECT, f"the password is unavailable: {event.reason}", event.hint
                                   or f"check it with `cordon secret check {listener}`",
                                   log=f"secret unavailable: {event.reason}")
        what = "cannot reach" if event.stage == "upstream-connect" else "cannot verify TLS of"
        raise HandshakeFailure(CANNOT_CONNECT, f"{what} the server at {self.settings.upstream}: {event.reason}", event.hint,
                               log=f"{event.stage}: {event.reason}")

    # -- output helpers ------------------------------------------------------------------------------------
    def _scrub_text(self, text: str) -> str:
        if self._secret is not None:
            value = self._secret.reveal()
            if value and value in text:
                text = text.replace(value, "***")
        return text

    def _scrub(self, raw: bytes) -> bytes:
        if self._secret is None:
            return raw
        value = self._secret.reveal().encode("utf-8")
        if value and value in raw:
            return raw.replace(value, b"*" * len(value))  # same length keeps the framing valid
        return raw

    def _refuse(self, refused: HandshakeFailure) -> list[Command]:
        self.state = "closed"
        fields = {"S": "FATAL", "V": "FATAL", "C": refused.code,
                  "M": f'cordon: listener "{self.settings.listener}": {refused.message}'}
        if refused.hint:
            fields["H"] = refused.hint
        return [Log(refused.level, refused.log), SendClient(pq.error_response(fields)), Close(refused.log)]
