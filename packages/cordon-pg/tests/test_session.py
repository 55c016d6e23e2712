"""The session state machine without sockets: every branch of the handshake, as the edge would drive it."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from cordon_pg import events as ev
from cordon_pg import protocol as pq
from cordon_pg.scram import SCRAM, SCRAM_PLUS, ScramClient, ScramServer, md5_password
from cordon_pg.session import Session, Settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

PASSWORD = "pg-canary-3f1c"  # the real database password: must never reach the client


class FakeSecret:
    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"


class Tokens:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens
        self.salted: dict[str, bytes] = {}

    def verify(self, password: str) -> str | None:
        return next((name for name, value in self.tokens.items() if value == password), None)

    def scram(self) -> ScramServer:
        return ScramServer(self.tokens.items(), salt=b"s" * 16, salted=self.salted)


def settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = dict(listener="prod-db", username="app_user", upstream="db.example.com:5432",
                                  random_bytes=lambda n: b"\x5a" * n)
    values.update(overrides)
    return Settings(**values)


def startup(user: str = "app_user", **params: str) -> bytes:
    return pq.startup_message([("user", user), ("database", "app"), *params.items()])


def kinds(commands: list[object]) -> list[str]:
    return [type(c).__name__ for c in commands]


def sent_to_client(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, ev.SendClient))


def sent_upstream(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, ev.SendUpstream))


def error_of(commands: list[object]) -> dict[str, str]:
    data = sent_to_client(commands)
    start = data.index(b"E")
    return pq.parse_error_fields(data[start + 5 :])


def upstream_ready(pid: int = 77, key: bytes = b"\x01\x02\x03\x04") -> bytes:
    return (pq.authentication(pq.AUTH_OK) + pq.message(b"S", b"server_version\x0015.18\x00")
            + pq.backend_key_data(pid, key) + pq.message(b"Z", b"I"))


def to_upstream_auth(session: Session, *, secret: bool = True) -> list[object]:
    """Drive a plain session to the point where the server's first auth request is awaited."""
    out = session.handle(ev.ClientData(startup()))
    assert kinds(out) == ["Log", "FetchSecret", "ConnectUpstream"]
    if secret:
        out += session.handle(ev.SecretReady(FakeSecret(PASSWORD)))
    out += session.handle(ev.UpstreamConnected())
    return out


# -- client startup -----------------------------------------------------------------------------------------


def test_ssl_request_accepted_then_startup_inside_tls() -> None:
    session = Session(settings())
    out = session.handle(ev.ClientData(pq.ssl_request()))
    assert kinds(out) == ["SendClient", "StartClientTLS"] and sent_to_client(out) == b"S"
    session.handle(ev.ClientTLSReady())
    out = session.handle(ev.ClientData(startup()))
    assert "ConnectUpstream" in kinds(out) and session.client_tls


def test_ssl_request_declined_when_client_tls_is_disabled_and_gssenc_always() -> None:
    session = Session(settings(client_tls="disable"))
    gss = struct.pack("!II", 8, pq.GSSENC_REQUEST)
    assert sent_to_client(session.handle(ev.ClientData(gss))) == b"N"
    assert sent_to_client(session.handle(ev.ClientData(pq.ssl_request()))) == b"N"
    assert "ConnectUpstream" in kinds(session.handle(ev.ClientData(startup())))


def test_bytes_after_an_ssl_request_are_refused() -> None:  # CVE-2021-23214: no buffered plaintext into TLS
    session = Session(settings())
    out = session.handle(ev.ClientData(pq.ssl_request() + startup()))
    assert error_of(out)["C"] == "08P01" and kinds(out)[-1] == "Close"
    assert "StartClientTLS" not in kinds(out)


def test_plain_startup_refused_when_tls_is_required() -> None:
    out = Session(settings(client_tls="require")).handle(ev.ClientData(startup()))
    fields = error_of(out)
    assert fields["C"] == "28000" and 'requires TLS' in fields["M"] and "sslmode=require" in fields["H"]
    assert "ConnectUpstream" not in kinds(out)


@pytest.mark.parametrize("user", ["postgres", ""])
def test_wrong_user_is_refused_with_the_fix(user: str) -> None:
    raw = pq.startup_message([("user", user)] if user else [("database", "app")])
    out = Session(settings()).handle(ev.ClientData(raw))
    fields = error_of(out)
    assert fields["S"] == "FATAL" and fields["C"] == "28000"
    assert fields["M"].startswith('cordon: listener "prod-db": ') and 'logs in as "app_user" only' in fields["M"]
    assert fields["H"] == "connect with user=app_user"
    assert "ConnectUpstream" not in kinds(out) and "FetchSecret" not in kinds(out)


def test_cancel_request_is_handed_to_the_edge() -> None:
    out = Session(settings()).handle(ev.ClientData(pq.cancel_request(4242, b"\xaa\xbb\xcc\xdd")))
    assert out == [ev.ForwardCancel(4242, b"\xaa\xbb\xcc\xdd"), ev.Close("cancel request")]


def test_garbage_and_oversized_input_are_protocol_violations() -> None:
    out = Session(settings()).handle(ev.ClientData(struct.pack("!II", 8, 1234)))
    assert error_of(out)["C"] == "08P01"
    session = Session(settings())
    session.handle(ev.ClientData(startup()))
    out = session.handle(ev.ClientData(b"Q" * 70_000))
    assert error_of(out)["C"] == "08P01" and "too much" in error_of(out)["M"]


# -- upstream -----------------------------------------------------------------------------------------------


def test_upstream_tls_then_startup_with_the_configured_user_and_client_parameters() -> None:
    session = Session(settings())
    session.handle(ev.ClientData(startup(application_name="psql", options="")))
    out = session.handle(ev.UpstreamConnected())
    assert sent_upstream(out) == pq.ssl_request()
    out = session.handle(ev.UpstreamData(b"S"))
    assert kinds(out) == ["StartUpstreamTLS"]
    out = session.handle(ev.UpstreamTLSReady(b"h" * 32))
    reader = pq.StartupReader()
    reader.feed(sent_upstream(out))
    sent = reader.next()
    assert isinstance(sent, pq.StartupMessage)
    assert sent.parameters == (("user", "app_user"), ("database", "app"), ("application_name", "psql"),
                               ("options", ""))


def test_upstream_without_tls_is_refused_under_verify_full() -> None:
    session = Session(settings())
    session.handle(ev.ClientData(startup()))
    session.handle(ev.UpstreamConnected())
    fields = error_of(session.handle(ev.UpstreamData(b"N")))
    assert fields["C"] == "08001" and "does not offer TLS" in fields["M"] and 'upstream_tls' in fields["H"]


def test_bytes_after_the_servers_s_are_refused() -> None:  # CVE-2021-23222
    session = Session(settings())
    session.handle(ev.ClientData(startup()))
    session.handle(ev.UpstreamConnected())
    out = session.handle(ev.UpstreamData(b"S" + pq.authentication(pq.AUTH_OK)))
    assert error_of(out)["C"] == "08006" and "StartUpstreamTLS" not in kinds(out)


def test_cleartext_md5_and_the_ready_sequence() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    assert sent_upstream(out) == pq.password_message(PASSWORD.encode())
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_MD5, b"salt")))
    assert sent_upstream(out) == pq.password_message(md5_password("app_user", PASSWORD, b"salt"))
    out = session.handle(ev.UpstreamData(upstream_ready(key=b"\x01\x02\x03\x04")))
    hello = sent_to_client(out)
    assert hello.startswith(pq.authentication(pq.AUTH_OK))
    assert pq.backend_key_data(77, b"\x5a" * 4) in hello and b"\x01\x02\x03\x04" not in hello
    assert hello.endswith(pq.message(b"Z", b"I")) and b"server_version" in hello
    (relay,) = [c for c in out if isinstance(c, ev.StartRelay)]
    assert relay.backend == (77, b"\x01\x02\x03\x04") and relay.client_key == b"\x5a" * 4
    assert session.state == "relay" and session.handle(ev.UpstreamData(b"x")) == []


def test_auth_request_before_the_secret_waits_for_it() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session, secret=False)
    assert session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT))) == []
    out = session.handle(ev.SecretReady(FakeSecret(PASSWORD)))
    assert sent_upstream(out) == pq.password_message(PASSWORD.encode())


def test_cleartext_over_plain_tcp_to_a_remote_server_is_refused() -> None:
    session = Session(settings(upstream_tls="disable", allow_cleartext=False))
    to_upstream_auth(session)
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    assert not sent_upstream(out) and "cleartext" in error_of(out)["M"]


def scram_server_side(mechanisms: list[str], binding: bytes | None) -> tuple[Session, list[object]]:
    session = Session(settings())
    session.handle(ev.ClientData(startup()))
    session.handle(ev.SecretReady(FakeSecret(PASSWORD)))
    session.handle(ev.UpstreamConnected())
    session.handle(ev.UpstreamData(b"S"))
    session.handle(ev.UpstreamTLSReady(binding))
    return session, session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_SASL, mechanisms=mechanisms)))


def play_scram_server(session: Session, first_out: list[object], password: str = PASSWORD,
                      binding: bytes | None = None) -> list[object]:
    """Answer cordon's SCRAM as a real server holding ``password`` (and a certificate hashing to ``binding``)."""
    raw = sent_upstream(first_out)
    _, client_first = pq.parse_sasl_initial_response(raw[5:])
    server = ScramServer([("db", password)], salt=b"x" * 16, binding=binding)
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_SASL_CONTINUE, server.first(client_first))))
    client_final = sent_upstream(out)[5:]
    try:
        server_final, _, _ = server.final(client_final)
    except Exception:  # the server would refuse; show the client side what cordon does with a bad signature
        server_final = b"v=" + b"A" * 44
    return session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_SASL_FINAL, server_final) + upstream_ready()))


def test_scram_plus_with_channel_binding_when_offered_over_tls() -> None:
    session, out = scram_server_side([SCRAM_PLUS, SCRAM], b"\x07" * 32)
    mechanism, first = pq.parse_sasl_initial_response(sent_upstream(out)[5:])
    assert mechanism == SCRAM_PLUS and first.startswith(b"p=tls-server-end-point,,")
    out = play_scram_server(session, out, binding=b"\x07" * 32)
    assert "StartRelay" in kinds(out)


def test_scram_plus_fails_when_the_certificate_is_not_the_servers() -> None:  # a TLS-terminating interceptor
    session, out = scram_server_side([SCRAM_PLUS, SCRAM], b"\x07" * 32)
    out = play_scram_server(session, out, binding=b"\x08" * 32)
    assert "failed SCRAM" in error_of(out)["M"] and "StartRelay" not in kinds(out)


def test_plain_scram_with_y_flag_when_plus_is_not_offered() -> None:
    session, out = scram_server_side([SCRAM], b"\x07" * 32)
    mechanism, first = pq.parse_sasl_initial_response(sent_upstream(out)[5:])
    assert mechanism == SCRAM and first.startswith(b"y,,")
    assert "StartRelay" in kinds(play_scram_server(session, out))


def test_a_server_that_does_not_know_the_password_is_refused() -> None:
    session, out = scram_server_side([SCRAM], None)
    out = play_scram_server(session, out, password="something-else")
    fields = error_of(out)
    assert fields["C"] == "08006" and "failed SCRAM" in fields["M"] and "StartRelay" not in kinds(out)


def test_a_server_skipping_the_scram_final_is_refused() -> None:
    session, out = scram_server_side([SCRAM], None)
    server = ScramServer([("db", PASSWORD)], salt=b"x" * 16)
    _, client_first = pq.parse_sasl_initial_response(sent_upstream(out)[5:])
    session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_SASL_CONTINUE, server.first(client_first))))
    out = session.handle(ev.UpstreamData(upstream_ready()))
    assert "without proving" in error_of(out)["M"] and "StartRelay" not in kinds(out)


@pytest.mark.parametrize(("request_", "words"), [
    (pq.authentication(pq.AUTH_GSS), "GSSAPI"),
    (pq.authentication(pq.AUTH_SASL, mechanisms=["OAUTHBEARER"]), "OAUTHBEARER"),
])
def test_unsupported_methods_are_named(request_: bytes, words: str) -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    fields = error_of(session.handle(ev.UpstreamData(request_)))
    assert words in fields["M"] and "pg_hba.conf" in fields["H"]


def test_rejected_password_gives_cordons_own_28p01_and_drops_the_cache() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    server_error = pq.error_response({"S": "FATAL", "C": "28P01",
                                      "M": f'password authentication failed for user "app_user" ({PASSWORD})'})
    out = session.handle(ev.UpstreamData(server_error))
    assert "InvalidateSecret" in kinds(out)
    fields = error_of(out)
    assert fields["C"] == "28P01" and fields["M"].startswith('cordon: listener "prod-db": ')
    assert "password authentication failed" not in fields["M"]  # never the server's text
    assert "cordon secret set prod-db" in fields["H"]
    assert PASSWORD.encode() not in sent_to_client(out)


def test_other_server_errors_are_passed_on_scrubbed() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    error = pq.error_response({"S": "FATAL", "C": "3D000", "M": f'database "app{PASSWORD}" does not exist'})
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_OK) + error))
    fields = error_of(out)
    assert fields["C"] == "3D000" and "does not exist" in fields["M"] and PASSWORD not in fields["M"]
    assert "InvalidateSecret" not in kinds(out)


def test_parameter_status_echoing_the_password_is_masked_keeping_the_framing() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    echo = pq.message(b"S", b"application_name\0" + PASSWORD.encode() + b"\0")
    out = session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_OK) + echo + pq.message(b"Z", b"I")))
    hello = sent_to_client(out)
    assert PASSWORD.encode() not in hello
    reader = pq.MessageReader(1 << 20)
    reader.feed(hello)
    assert [m.type for m in iter(reader.next, None)] == [b"R", b"S", b"Z"]


@pytest.mark.parametrize(("stage", "code", "words"), [
    ("secret", "08001", "password is unavailable"),
    ("upstream-connect", "08001", "cannot reach"),
    ("upstream-tls", "08001", "cannot verify TLS"),
])
def test_edge_failures_become_errors_with_hints(stage: str, code: str, words: str) -> None:
    session = Session(settings())
    session.handle(ev.ClientData(startup()))
    fields = error_of(session.handle(ev.Failed(stage, "it broke", "do this")))
    assert fields["C"] == code and words in fields["M"] and "it broke" in fields["M"] and fields["H"] == "do this"


def test_client_data_pipelined_during_the_handshake_reaches_the_relay() -> None:
    session = Session(settings(upstream_tls="disable"))
    query = pq.message(b"Q", b"select 1\0")
    session.handle(ev.ClientData(startup() + query))
    session.handle(ev.SecretReady(FakeSecret(PASSWORD)))
    session.handle(ev.UpstreamConnected())
    session.handle(ev.UpstreamData(pq.authentication(pq.AUTH_CLEARTEXT)))
    out = session.handle(ev.UpstreamData(upstream_ready() + b"N\0"))
    (relay,) = [c for c in out if isinstance(c, ev.StartRelay)]
    assert relay.to_upstream == query and relay.to_client == b"N\0"


def test_close_events() -> None:
    session = Session(settings())
    assert session.handle(ev.ClientClosed()) == [ev.Close("client closed during the handshake")]
    assert session.handle(ev.ClientData(startup())) == []


def test_the_server_closing_during_the_login_is_explained_to_the_client() -> None:
    session = Session(settings(upstream_tls="disable"))
    to_upstream_auth(session)
    out = session.handle(ev.UpstreamClosed())
    fields = error_of(out)
    assert fields["C"] == "08006" and "closed the connection during the login" in fields["M"]


# -- proxy tokens on the client leg -------------------------------------------------------------------------


def test_token_in_cleartext_inside_tls() -> None:
    session = Session(settings(tokens=Tokens({"default": "tok-1"})))
    session.handle(ev.ClientData(pq.ssl_request()))
    session.handle(ev.ClientTLSReady())
    out = session.handle(ev.ClientData(startup()))
    assert sent_to_client(out) == pq.authentication(pq.AUTH_CLEARTEXT) and "ConnectUpstream" not in kinds(out)
    out = session.handle(ev.ClientData(pq.password_message(b"tok-1")))
    assert "ConnectUpstream" in kinds(out) and session.token == "default"


def test_wrong_token_is_28p01_and_nothing_is_fetched() -> None:
    session = Session(settings(tokens=Tokens({"default": "tok-1"}), client_tls="disable"))
    session.handle(ev.ClientData(startup()))
    client = ScramClient("not-a-token", binding=None, use_plus=False)
    out = session.handle(ev.ClientData(pq.sasl_initial_response(SCRAM, client.first())))
    server_first = pq.parse_authentication(sent_to_client(out)[5:]).data
    out = session.handle(ev.ClientData(pq.sasl_response(client.final(server_first))))
    fields = error_of(out)
    assert fields["C"] == "28P01" and "proxy token" in fields["M"]
    assert "FetchSecret" not in kinds(out) and "ConnectUpstream" not in kinds(out)


def test_token_by_scram_without_tls() -> None:
    session = Session(settings(tokens=Tokens({"default": "tok-1", "codex": "tok-2"}), client_tls="disable"))
    out = session.handle(ev.ClientData(startup()))
    request = pq.parse_authentication(sent_to_client(out)[5:])
    assert request.code == pq.AUTH_SASL and request.mechanisms == (SCRAM,)
    client = ScramClient("tok-2", binding=None, use_plus=False)
    out = session.handle(ev.ClientData(pq.sasl_initial_response(SCRAM, client.first())))
    server_first = pq.parse_authentication(sent_to_client(out)[5:]).data
    out = session.handle(ev.ClientData(pq.sasl_response(client.final(server_first))))
    final = pq.parse_authentication(sent_to_client(out)[5:])
    assert final.code == pq.AUTH_SASL_FINAL
    client.verify(final.data)
    assert "ConnectUpstream" in kinds(out) and session.token == "codex"


# -- hostile input --------------------------------------------------------------------------------------------

KNOWN = (ev.SendClient, ev.SendUpstream, ev.StartClientTLS, ev.ConnectUpstream, ev.StartUpstreamTLS,
         ev.FetchSecret, ev.InvalidateSecret, ev.ForwardCancel, ev.StartRelay, ev.Close, ev.Log)


@hypothesis_settings(max_examples=200, deadline=None)
@given(client=st.lists(st.binary(max_size=200), max_size=6), upstream=st.lists(st.binary(max_size=200), max_size=6),
       tls=st.booleans())
def test_random_bytes_from_either_side_only_ever_produce_known_commands(client: list[bytes], upstream: list[bytes],
                                                                         tls: bool) -> None:
    session = Session(settings(upstream_tls="verify-full" if tls else "disable"))
    out: list[object] = []
    out += session.handle(ev.ClientData(startup()))
    out += session.handle(ev.SecretReady(FakeSecret(PASSWORD)))
    out += session.handle(ev.UpstreamConnected())
    for chunk in client:
        out += session.handle(ev.ClientData(chunk))
    for chunk in upstream:
        out += session.handle(ev.UpstreamData(chunk))
    assert all(isinstance(c, KNOWN) for c in out)
    assert PASSWORD.encode() not in sent_to_client(out)
    fresh = Session(settings())
    for chunk in client:
        for command in fresh.handle(ev.ClientData(chunk)):
            assert isinstance(command, KNOWN)
