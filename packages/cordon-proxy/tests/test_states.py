"""The session as a state machine: the transition table, replies naming their command, what the edge reads
next, settings swapped between requests, and the Authenticated command (scripted, no sockets)."""

from __future__ import annotations

import base64
import dataclasses

import pytest
from cordon_config.model import HeaderAuth, Route, SecretRef
from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.session import TRANSITIONS, Session, Settings, SettingsRef
from cordon_proxy.core.states import ProtocolError, Read, State

API = Route("api", "api.test", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {"var": "X"}))
OTHER = Route("other", "other.test", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {"var": "Y"}))
TOKEN = "Basic " + base64.b64encode(b"ns:good").decode()
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class Secret:
    def reveal(self) -> str:
        return "sk-state-secret"


def mitm(s: Session, host: str = "api.test") -> None:
    out = s.handle(ev.ClientData(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode()))
    assert isinstance(out[-1], cmd.StartClientTLS) and s.state is State.HANDSHAKE
    s.handle(ev.ClientTLSReady(out[-1], host))


def test_every_state_has_an_entry_and_client_closed_is_expected_wherever_the_session_is_open() -> None:
    assert set(TRANSITIONS) == set(State)
    for state, expected in TRANSITIONS.items():
        assert (ev.ClientClosed in expected) == (state is not State.CLOSED), state
        for name in expected.values():
            assert callable(getattr(Session, name)), name


@pytest.mark.parametrize(
    "event",
    [
        ev.UpstreamData(b"HTTP/1.1 200 OK\r\n\r\n"),
        ev.UpstreamClosed(),
        ev.UpstreamTimeout(5),
        ev.SecretReady(cmd.FetchSecret(API), Secret()),
        ev.TunnelConnected(cmd.OpenTunnel("x.test", 443, ())),
    ],
)
def test_an_event_the_idle_state_does_not_expect_raises(event: ev.Event) -> None:
    s = Session(Settings(routes=(API,), listen_port=6790))
    with pytest.raises(ProtocolError, match="is not expected in state IDLE"):
        s.handle(event)


def test_a_reply_must_name_the_command_the_session_awaits() -> None:
    s = Session(Settings(routes=(API,), listen_port=6790))
    mitm(s)
    (*_, fetch) = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert isinstance(fetch, cmd.FetchSecret) and s.awaiting is fetch and s.state is State.SECRET
    with pytest.raises(ProtocolError, match="not awaiting"):
        s.handle(ev.SecretReady(cmd.FetchSecret(API), Secret()))  # an equal command, but not the one asked
    (connect,) = s.handle(ev.SecretReady(fetch, Secret()))
    assert s.awaiting is connect and s.state is State.OPEN_UPSTREAM
    with pytest.raises(ProtocolError):
        s.handle(ev.UpstreamConnected(fetch))  # type: ignore[arg-type]  # a reply naming another command
    s.handle(ev.UpstreamConnected(connect))
    assert s.awaiting is None and s.state is State.FORWARD


def test_a_closed_session_ignores_whatever_was_still_in_flight() -> None:
    s = Session(Settings(routes=(API,), listen_port=6790))
    mitm(s)
    (*_, fetch) = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert s.handle(ev.ClientClosed())[-1] == cmd.CloseClient()
    assert s.closed and s.next_read is Read.DONE
    for late in (ev.SecretReady(fetch, Secret()), ev.ClientData(b"x"), ev.UpstreamClosed(), ev.ClientClosed()):
        assert s.handle(late) == []


def test_next_read_follows_one_exchange() -> None:
    s = Session(Settings(routes=(API,), listen_port=6790))
    assert s.next_read is Read.REQUEST
    assert s.handle(ev.ClientData(b"CONNECT api.test:443 HTTP/1.1\r\nHost: api")) == []
    assert s.next_read is Read.HEAD  # a head has started: the head timeout applies
    (*_, tls) = s.handle(ev.ClientData(b".test:443\r\n\r\n"))
    assert s.next_read is Read.REPLY
    s.handle(ev.ClientTLSReady(tls, "api.test"))
    (*_, fetch) = s.handle(ev.ClientData(b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\n\r\nab"))
    assert s.next_read is Read.REPLY
    (connect,) = s.handle(ev.SecretReady(fetch, Secret()))
    s.handle(ev.UpstreamConnected(connect))
    assert s.next_read is Read.BODY  # the client and the upstream are both read
    s.handle(ev.ClientData(b"cd"))
    assert s.next_read is Read.RESPONSE  # only the upstream
    s.handle(ev.UpstreamData(RESPONSE))
    assert s.next_read is Read.REQUEST


def test_an_early_answer_while_the_body_comes_makes_the_edge_discard_then_close() -> None:
    s = Session(Settings(routes=(API,), listen_port=6790))
    mitm(s)
    (*_, fetch) = s.handle(ev.ClientData(b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 99\r\n\r\nab"))
    s.handle(ev.SecretFailed(fetch, "no secret"))
    assert s.closed and s.next_read is Read.DISCARD


def test_settings_are_swapped_at_the_next_request_head() -> None:
    ref = SettingsRef(Settings(routes=(API,), listen_port=6790, version="1"))
    s = Session(ref)
    unrouted = s.handle(ev.ClientData(b"CONNECT other.test:443 HTTP/1.1\r\n\r\n"))
    assert isinstance(unrouted[-1], cmd.Resolve)  # unrouted: resolved for a tunnel
    t = Session(ref)
    ref.swap(Settings(routes=(API, OTHER), listen_port=6790, version="2"))
    assert s.settings.version == "1"  # nothing changes before the next request
    mitm(t, "other.test")  # routed now: MITM
    assert t.settings.version == "2"


def test_a_tunnel_follows_its_route_through_a_reload_and_ends_with_it() -> None:
    ref = SettingsRef(Settings(routes=(API,), listen_port=6790))
    s = Session(ref)
    mitm(s)
    edited = dataclasses.replace(API, auth=HeaderAuth("X-Api-Key", None))
    ref.swap(dataclasses.replace(ref.current, routes=(edited,)))
    (*_, fetch) = s.handle(ev.ClientData(b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert fetch == cmd.FetchSecret(edited)  # the next request uses the route as it is now
    s.handle(ev.SecretReady(fetch, Secret()))
    out = s.handle(ev.UpstreamConnected(s.awaiting))  # type: ignore[arg-type]
    sent = b"".join(c.data for c in out if isinstance(c, cmd.SendUpstream))
    assert b"\r\nX-Api-Key: sk-state-secret\r\n" in sent and b"Authorization" not in sent
    s.handle(ev.UpstreamData(RESPONSE))
    ref.swap(dataclasses.replace(ref.current, routes=()))
    out = s.handle(ev.ClientData(b"GET /b HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    response = b"".join(c.data for c in out if isinstance(c, cmd.SendClient))
    assert response.startswith(b"HTTP/1.1 421 ") and b"no route for api.test since the last reload" in response
    assert not [c for c in out if isinstance(c, cmd.FetchSecret)] and s.closed


def test_a_request_in_flight_keeps_the_settings_it_started_with() -> None:
    ref = SettingsRef(Settings(routes=(API,), listen_port=6790))
    s = Session(ref)
    mitm(s)
    (*_, fetch) = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    ref.swap(dataclasses.replace(ref.current, routes=()))
    (connect,) = s.handle(ev.SecretReady(fetch, Secret()))
    assert connect == cmd.OpenUpstream("api.test", 443, "api.test")
    assert s.settings.routes == (API,)


def test_a_valid_token_is_announced_once_with_its_name() -> None:
    s = Session(Settings(routes=(API,), listen_port=6790, verify_token=lambda v: "codex" if v == TOKEN else None))
    out = s.handle(ev.ClientData(f"CONNECT api.test:443 HTTP/1.1\r\nProxy-Authorization: {TOKEN}\r\n\r\n".encode()))
    assert [c for c in out if isinstance(c, cmd.Authenticated)] == [cmd.Authenticated("codex")]
    s.handle(ev.ClientTLSReady(s.awaiting, "api.test"))  # type: ignore[arg-type]
    out = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert not any(isinstance(c, cmd.Authenticated) for c in out)  # requests in the tunnel run under it
    unauthenticated = Session(Settings(routes=(API,), listen_port=6790, verify_token=lambda v: None))
    out = unauthenticated.handle(ev.ClientData(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n"))
    assert not any(isinstance(c, cmd.Authenticated) for c in out)
