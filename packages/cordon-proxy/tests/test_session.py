"""Scripted event → command tests of the session state machine (no sockets, no asyncio)."""

from __future__ import annotations

import base64
from ipaddress import ip_address

import pytest
from cordon_config.model import BasicAuth, HeaderAuth, Route, SecretRef
from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.session import Session, Settings
from cordon_proxy.core.states import ProtocolError, Read, State

SECRET = "sk-real-0123456789"
API = Route("api", "api.test", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {"var": "X"}))
ANTHROPIC = Route("anthropic", "anthropic.test", HeaderAuth("x-api-key"), SecretRef("env", {"var": "Y"}))
PLAIN = Route("plain", "plain.test", HeaderAuth("Authorization", "Bearer"), SecretRef("env", {}), allow_plain_http=True)
BASIC = Route("basic", "basic.test", BasicAuth("user"), SecretRef("env", {}))
ROUTES = (API, ANTHROPIC, PLAIN, BASIC)
PUBLIC = ip_address("93.184.216.34")


class FakeSecret:
    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "FakeSecret('***')"


def session(**kw: object) -> Session:
    return Session(Settings(routes=ROUTES, listen_port=6790, version="9.9", **kw))  # type: ignore[arg-type]


def kinds(commands: list[object]) -> list[str]:
    return [type(c).__name__ for c in commands]


def sent_client(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, cmd.SendClient))


def sent_upstream(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, cmd.SendUpstream))


def status_of(commands: list[object]) -> int:
    data = sent_client(commands)
    return int(data[9:12])


def mitm(s: Session | None = None, host: str = "api.test", port: int = 443) -> Session:
    """A session inside an established MITM tunnel to ``host``."""
    s = s or session()
    out = s.handle(ev.ClientData(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()))
    assert kinds(out) == ["RequestStarted", "SendClient", "LogRequest", "StartClientTLS"]
    assert out[1].data == b"HTTP/1.1 200 Connection established\r\n\r\n"
    assert out[3] == cmd.StartClientTLS(host)
    route = next(r for r in ROUTES if r.host == host)
    assert s.handle(ev.ClientTLSReady(s.awaiting, host)) == [cmd.MitmStarted(host, route.name)]  # logged once per tunnel
    assert s.tunnel is not None and s.state is State.IDLE
    return s


def forward(s: Session, request: bytes, secret: str = SECRET) -> tuple[list[object], bytes]:
    """Drive a routed request up to the bytes written upstream; returns (all commands, upstream bytes)."""
    out = s.handle(ev.ClientData(request))
    assert isinstance(out[-1], cmd.FetchSecret), out
    route = out[-1].route
    out2 = s.handle(ev.SecretReady(s.awaiting, FakeSecret(secret)))
    assert out2 == [cmd.OpenUpstream(route.host, s.tunnel.port if s.tunnel else 80, route.host if s.tunnel else None)]
    out3 = s.handle(ev.UpstreamConnected(s.awaiting))
    return out + out2 + out3, sent_upstream(out3)


def headers_of(head: bytes) -> list[tuple[str, str]]:
    lines = head.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
    return [tuple(x.strip() for x in line.decode().split(":", 1)) for line in lines]  # type: ignore[misc]


# -- /health and origin form ------------------------------------------------------------------------------


def test_health_says_only_ok_and_closes_the_connection() -> None:
    s = session()
    out = s.handle(ev.ClientData(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n"))
    assert kinds(out) == ["RequestStarted", "SendClient", "LogRequest", "CloseClient"]
    response = sent_client(out)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in response
    assert response.endswith(b'\r\n\r\n{"status":"ok"}')  # no version, no route count
    assert s.next_read is Read.DONE  # one answer per connection, keep-alive or not


def test_health_answers_what_settings_health_says_for_the_query_and_400_when_it_refuses() -> None:
    seen: list[str] = []

    def health(query: str) -> dict[str, object] | None:
        seen.append(query)
        return None if query == "bad" else {"status": "ok", "proof": "p"}

    s = session(health=health)
    out = s.handle(ev.ClientData(b"GET /health?nonce=ab&auth=cd HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n"))
    assert sent_client(out).endswith(b'{"status":"ok","proof":"p"}') and seen == ["nonce=ab&auth=cd"]
    bad = session(health=health).handle(ev.ClientData(b"GET /health?bad HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n"))
    assert status_of(bad) == 400 and b"malformed /health query" in sent_client(bad)
    assert status_of(session().handle(ev.ClientData(
        b"GET /health?x=1 HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n"))) == 400  # no health function: no query


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /health HTTP/1.1\r\nHost: evil.example:6790\r\n\r\n",  # DNS rebinding
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:1234\r\n\r\n",
        b"GET /health HTTP/1.1\r\n\r\n",
        b"GET /other HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n",
        b"POST /health HTTP/1.1\r\nHost: 127.0.0.1:6790\r\nContent-Length: 1\r\n\r\nx",
        b"OPTIONS * HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n",
    ],
)
def test_other_origin_form_requests_get_400(request_bytes: bytes) -> None:
    s = session()
    out = s.handle(ev.ClientData(request_bytes))
    assert status_of(out) == 400
    assert b"X-Cordon-Error:" in sent_client(out)
    assert isinstance(out[-1], cmd.CloseClient)
    assert s.closed


# -- MITM: the whole routed exchange ----------------------------------------------------------------------


def test_routed_request_is_injected_and_response_streamed_back() -> None:
    s = mitm()
    _out, upstream = forward(
        s, b"POST /v1/chat?key=q HTTP/1.1\r\nHost: api.test\r\nAuthorization: Bearer dummy\r\nContent-Length: 4\r\n\r\nbody"
    )
    assert upstream.startswith(b"POST /v1/chat?key=q HTTP/1.1\r\nHost: api.test\r\n")
    assert upstream.endswith(b"\r\n\r\nbody")  # head and small body in one write
    hdrs = headers_of(upstream)
    assert ("Authorization", f"Bearer {SECRET}") in hdrs
    assert ("Content-Length", "4") in hdrs
    assert ("Via", "1.1 cordon") in hdrs
    assert b"dummy" not in upstream
    resp = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok"))
    assert kinds(resp) == ["SendClient", "SendClient", "ReleaseUpstream", "LogRequest"]
    assert resp[2] == cmd.ReleaseUpstream(True)
    client = sent_client(resp)
    assert client.startswith(b"HTTP/1.1 200 OK\r\n") and client.endswith(b"\r\n\r\nok")
    assert b"keep-alive" not in client.lower()  # hop-by-hop dropped
    record = resp[3].record
    assert (record.route, record.method, record.host, record.path, record.status, record.bytes) == (
        "api", "POST", "api.test", "/v1/chat", 200, 2,
    )
    assert s.next_read is Read.REQUEST


def test_two_requests_on_one_tunnel_then_different_host_gets_421() -> None:
    s = mitm()
    for _ in range(2):
        forward(s, b"GET /a HTTP/1.1\r\nHost: api.test\r\n\r\n")
        done = s.handle(ev.UpstreamData(b"HTTP/1.1 204 No Content\r\n\r\n"))
        assert cmd.ReleaseUpstream(True) in done
    out = s.handle(ev.ClientData(b"GET /a HTTP/1.1\r\nHost: other.test\r\n\r\n"))
    assert status_of(out) == 421
    assert not any(isinstance(c, cmd.FetchSecret | cmd.OpenUpstream | cmd.SendUpstream) for c in out)
    assert b"does not match tunnel host api.test" in sent_client(out)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET / HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: api.test:8443\r\n\r\n",
        b"GET https://evil.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
        b"GET https://api.test/ HTTP/1.1\r\nHost: evil.test\r\n\r\n",
        b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n",
    ],
)
def test_binding_mismatch_inside_tunnel_is_421_and_nothing_forwarded(request_bytes: bytes) -> None:
    s = mitm()
    out = s.handle(ev.ClientData(request_bytes))
    assert status_of(out) == 421
    assert kinds(out)[-1] == "CloseClient"
    assert not any(isinstance(c, cmd.FetchSecret | cmd.OpenUpstream | cmd.SendUpstream) for c in out)


@pytest.mark.parametrize("host", ["API.Test", "api.test.", "api.test:443", "API.TEST.:443"])
def test_host_case_and_trailing_dot_variants_still_match(host: str) -> None:
    s = mitm()
    _, upstream = forward(s, f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    assert upstream.startswith(b"GET / HTTP/1.1\r\nHost: api.test\r\n")


def test_absolute_form_inside_tunnel_is_rewritten_to_origin_form() -> None:
    s = mitm()
    _, upstream = forward(s, b"GET https://api.test/v1/x?y=1 HTTP/1.1\r\nHost: api.test\r\n\r\n")
    assert upstream.startswith(b"GET /v1/x?y=1 HTTP/1.1\r\nHost: api.test\r\n")


@pytest.mark.parametrize("sni", [None, "evil.test"])
def test_sni_missing_or_different_closes_without_forwarding(sni: str | None) -> None:
    s = session()
    s.handle(ev.ClientData(b"CONNECT api.test:443 HTTP/1.1\r\n\r\n"))
    out = s.handle(ev.ClientTLSReady(s.awaiting, sni))
    assert kinds(out) == ["LogRequest", "CloseClient"]
    assert s.closed


def test_port_is_kept_in_host_and_upstream() -> None:
    s = mitm(port=8443)
    out = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test:8443\r\n\r\n"))
    assert isinstance(out[-1], cmd.FetchSecret)
    s.handle(ev.SecretReady(out[-1], FakeSecret(SECRET)))
    with pytest.raises(ProtocolError):  # a stale reply is refused, never taken for the next one
        s.handle(ev.SecretReady(out[-1], FakeSecret(SECRET)))


# -- header hygiene ---------------------------------------------------------------------------------------


def test_every_client_credential_is_stripped_before_one_injection() -> None:
    s = mitm(host="anthropic.test")
    request = (
        b"GET / HTTP/1.1\r\nHost: anthropic.test\r\nauthorization: a\r\nAUTHORIZATION: b\r\n"
        b"x-api-key: dummy1\r\nX-Api-Key: dummy2\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n"
        b"Connection: x-api-key, authorization, x-custom\r\nX-Custom: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\n"
        b"Upgrade: h2c\r\nX-Kept: yes\r\n\r\n"
    )
    _, upstream = forward(s, request)
    hdrs = headers_of(upstream)
    names = [n.lower() for n, _ in hdrs]
    assert names.count("x-api-key") == 1
    assert ("x-api-key", SECRET) in hdrs
    for gone in ("authorization", "proxy-authorization", "connection", "x-custom", "keep-alive", "te", "upgrade"):
        assert gone not in names, gone
    assert ("X-Kept", "yes") in hdrs
    assert b"dummy" not in upstream


def test_basic_auth_route_injects_base64_user_and_secret() -> None:
    s = mitm(host="basic.test")
    _, upstream = forward(s, b"GET / HTTP/1.1\r\nHost: basic.test\r\nAuthorization: Basic eDp5\r\n\r\n")
    expected = base64.b64encode(f"user:{SECRET}".encode()).decode()
    assert headers_of(upstream).count(("Authorization", f"Basic {expected}")) == 1


@pytest.mark.parametrize("bad", ["tok\r\nX-Injected: 1", "tok\n", " tok", "tök"])
def test_secret_that_is_not_a_header_value_gives_503(bad: str) -> None:
    s = mitm()
    s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    out = s.handle(ev.SecretReady(s.awaiting, FakeSecret(bad)))
    assert status_of(out) == 503
    assert bad.encode("utf-8") not in sent_client(out)
    assert not any(isinstance(c, cmd.OpenUpstream) for c in out)


def test_secret_unavailable_gives_503_naming_the_route() -> None:
    s = mitm()
    s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    out = s.handle(ev.SecretFailed(s.awaiting, 'secret for route "api" unavailable: keyring locked'))
    assert status_of(out) == 503
    body = sent_client(out)
    assert b"X-Cordon-Error: secret-unavailable" in body
    assert body.endswith(b'cordon: secret for route "api" unavailable: keyring locked\n')


# -- responses --------------------------------------------------------------------------------------------


def test_chunked_sse_response_is_relayed_event_by_event() -> None:
    s = mitm()
    forward(s, b"POST /v1/responses HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n")
    head = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"))
    assert sent_client(head).startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Transfer-Encoding: chunked" in sent_client(head)
    first = s.handle(ev.UpstreamData(b"b\r\ndata: one\n\n\r\n"))
    assert sent_client(first) == b"b\r\ndata: one\n\n\r\n"
    second = s.handle(ev.UpstreamData(b"b\r\ndata: two\n\n\r\n0\r\n\r\n"))
    assert sent_client(second) == b"b\r\ndata: two\n\n\r\n0\r\n\r\n"
    assert cmd.ReleaseUpstream(True) in second


def test_upstream_dying_mid_body_aborts_the_client() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"))
    out = s.handle(ev.UpstreamClosed())
    assert cmd.CloseClient(abort=True) in out
    assert b"0\r\n\r\n" not in sent_client(out)
    assert cmd.ReleaseUpstream(False) in out


def test_close_delimited_response_becomes_chunked_for_http11_client() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\n\r\nabc"))
    head, body = sent_client(out).split(b"\r\n\r\n", 1)
    assert b"Transfer-Encoding: chunked" in head
    end = s.handle(ev.UpstreamClosed())
    body += sent_client(end)
    assert body.endswith(b"0\r\n\r\n") and dechunk(body) == b"abc"  # a last "c" may wait (could begin the key)
    assert cmd.ReleaseUpstream(False) in end


def dechunk(body: bytes) -> bytes:
    """The data of a complete chunked body."""
    out = b""
    while True:
        size_line, body = body.split(b"\r\n", 1)
        size = int(size_line, 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2 :]


def test_upstream_401_drops_the_cached_secret_and_redirects_are_relayed() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"))
    assert cmd.InvalidateSecret("api") in out
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 302 Found\r\nLocation: https://other.test/\r\nContent-Length: 0\r\n\r\n"))
    assert b"Location: https://other.test/" in sent_client(out)
    assert not any(isinstance(c, cmd.OpenUpstream | cmd.FetchSecret) for c in out)


@pytest.mark.parametrize(
    ("failure", "status", "code"),
    [
        (("upstream-tls", "upstream TLS verification failed for api.test: certificate has expired"), 502, b"upstream-tls"),
        (("upstream-failed", "upstream api.test: Connection refused"), 502, b"upstream-failed"),
        (("upstream-timeout", "upstream api.test timed out after 10 s (connecting)"), 504, b"upstream-timeout"),
    ],
)
def test_upstream_connect_failures_are_answered(failure: tuple[str, str], status: int, code: bytes) -> None:
    s = mitm()
    s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    s.handle(ev.SecretReady(s.awaiting, FakeSecret(SECRET)))
    out = s.handle(ev.UpstreamFailed(s.awaiting, *failure))
    assert status_of(out) == status
    assert b"X-Cordon-Error: " + code in sent_client(out)


def test_response_head_timeout_is_504() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    assert s.next_read is Read.RESPONSE
    out = s.handle(ev.UpstreamTimeout(300))
    assert status_of(out) == 504
    assert b"timed out after 300 s" in sent_client(out)


def test_invalid_upstream_response_framing_is_502() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"))
    assert status_of(out) == 502


def test_interim_100_continue_is_relayed() -> None:
    s = mitm()
    forward(s, b"POST / HTTP/1.1\r\nHost: api.test\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 100 Continue\r\n\r\n"))
    assert sent_client(out).startswith(b"HTTP/1.1 100 Continue\r\n")
    body = s.handle(ev.ClientData(b"abc"))
    assert sent_upstream(body) == b"abc"
    done = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert cmd.ReleaseUpstream(True) in done


def test_head_response_keeps_content_length_without_body() -> None:
    s = mitm()
    forward(s, b"HEAD / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
    assert b"Content-Length: 1234" in sent_client(out)
    assert cmd.ReleaseUpstream(False) in out  # llhttp cannot skip a HEAD body: never reuse after HEAD


# -- streaming and pipelining -----------------------------------------------------------------------------


def test_request_body_streams_chunk_by_chunk_with_backpressure_flags() -> None:
    s = mitm()
    _, upstream = forward(s, b"PUT / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert upstream.endswith(b"\r\n\r\n3\r\nabc\r\n")
    assert s.next_read is Read.BODY  # body still coming
    out = s.handle(ev.ClientData(b"2\r\nde\r\n0\r\n\r\n"))
    assert sent_upstream(out) == b"2\r\nde\r\n0\r\n\r\n"
    assert s.next_read is Read.RESPONSE  # request done: wait for the response


def test_pipelined_requests_are_served_one_after_the_other() -> None:
    s = mitm()
    both = b"GET /1 HTTP/1.1\r\nHost: api.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: api.test\r\n\r\n"
    _out, upstream = forward(s, both)
    assert upstream.startswith(b"GET /1 ") and b"GET /2" not in upstream
    assert s.next_read is Read.RESPONSE
    done = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert isinstance(done[-1], cmd.FetchSecret)  # the second request starts only now
    s.handle(ev.SecretReady(s.awaiting, FakeSecret(SECRET)))
    second = s.handle(ev.UpstreamConnected(s.awaiting))
    assert sent_upstream(second).startswith(b"GET /2 ")


def test_client_closing_mid_request_releases_the_upstream() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.ClientClosed())
    assert cmd.ReleaseUpstream(False) in out and cmd.CloseClient() in out


def test_an_early_answer_to_an_unfinished_body_closes_with_a_lingering_read() -> None:
    s = mitm()
    forward(s, b"POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 100000\r\n\r\n" + b"z" * 10)
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"))
    assert status_of(out) == 413 and b"Connection: close" in sent_client(out)
    assert out[-1] == cmd.CloseClient(linger=True)  # the client is still sending: read it off, then close


def test_an_answer_after_the_whole_body_closes_without_lingering() -> None:
    s = mitm()
    forward(s, b"POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n"))
    assert out[-1] == cmd.CloseClient()


def test_an_error_while_the_body_is_still_coming_lingers_but_not_once_it_is_all_in() -> None:
    s = mitm()
    s.handle(ev.ClientData(b"POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 9\r\n\r\nabc"))
    out = s.handle(ev.SecretFailed(s.awaiting, "no secret"))
    assert status_of(out) == 503 and out[-1] == cmd.CloseClient(linger=True)
    s = mitm()
    s.handle(ev.ClientData(b"POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc"))
    out = s.handle(ev.SecretFailed(s.awaiting, "no secret"))
    assert status_of(out) == 503 and out[-1] == cmd.CloseClient()  # the body was all read (and queued)


@pytest.mark.parametrize("body,linger", [(b"abc", True), (b"x" * 100, False)])
def test_a_refused_upload_lingers_only_while_its_body_is_still_coming(body: bytes, linger: bool) -> None:
    s = session()
    out = s.handle(ev.ClientData(b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:6790\r\nContent-Length: 100\r\n\r\n" + body))
    assert status_of(out) == 400
    assert out[-1] == cmd.CloseClient(linger=linger)


def test_a_request_refused_for_its_token_lingers_while_its_body_is_coming() -> None:
    s = session(verify_token=verifier)
    out = s.handle(ev.ClientData(b"POST http://plain.test/x HTTP/1.1\r\nHost: plain.test\r\nContent-Length: 9\r\n\r\nab"))
    assert status_of(out) == 407 and out[-1] == cmd.CloseClient(linger=True)


def test_an_answered_request_does_not_make_a_later_close_linger() -> None:
    s = mitm()
    forward(s, b"POST /up HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\n\r\nabc")
    s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    out = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: other.test\r\n\r\n"))
    assert status_of(out) == 421 and out[-1] == cmd.CloseClient()


def test_http10_client_gets_close_delimited_body() -> None:
    s = mitm()
    forward(s, b"GET / HTTP/1.0\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
    client = sent_client(out)
    assert client.startswith(b"HTTP/1.0 200 OK\r\n")
    assert client.endswith(b"\r\n\r\nabc")
    assert b"Transfer-Encoding" not in client
    assert out[-1] == cmd.CloseClient()


# -- framing rejections -----------------------------------------------------------------------------------

BAD_FRAMING = [
    b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: 3, 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nContent-Length: +3\r\n\r\nabc",
    b"POST / HTTP/1.0\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked, identity\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: xchunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: api.test\r\nTransfer-Encoding: chunked\r\n\r\n0x3\r\nabc\r\n0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Folded: a\r\n b\r\n\r\n",
    b"GET / HTTP/1.1\nHost: api.test\n\n",
    b"GET / HTTP/1.1\r\nHost: api.test\r\nX: a\rb\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: api.test\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost : api.test\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: api.test\r\nHost: api.test\r\n\r\n",
    b"GET / HTTP/1.1\r\n\r\n",
    b"GET / HTTP/2.0\r\nHost: api.test\r\n\r\n",
]


@pytest.mark.parametrize("request_bytes", BAD_FRAMING)
def test_ambiguous_framing_is_400_and_nothing_forwarded(request_bytes: bytes) -> None:
    s = mitm()
    out = s.handle(ev.ClientData(request_bytes))
    assert status_of(out) == 400, sent_client(out)
    assert out[-1] == cmd.CloseClient()
    assert not any(isinstance(c, cmd.FetchSecret | cmd.OpenUpstream | cmd.SendUpstream) for c in out)


def test_huge_header_in_one_write_is_431() -> None:
    s = mitm()
    out = s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"))
    assert status_of(out) == 431
    assert b"X-Cordon-Error: header-too-large" in sent_client(out)


def test_huge_header_dribbled_is_431_before_the_head_completes() -> None:
    s = mitm()
    assert s.handle(ev.ClientData(b"GET / HTTP/1.1\r\nHost: api.test\r\nX-Big: ")) == []
    for _ in range(64):
        out = s.handle(ev.ClientData(b"a" * 4096))
        if out:
            break
    assert status_of(out) == 431
    assert s.closed


def test_too_many_header_lines_is_431() -> None:
    s = mitm()
    head = b"GET / HTTP/1.1\r\nHost: api.test\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
    assert status_of(s.handle(ev.ClientData(head))) == 431


# -- CONNECT on the plain listener ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("127.0.0.1:443", b"loopback"),
        ("127.1:443", b"loopback"),
        ("2130706433:443", b"loopback"),
        ("0x7f.1:443", b"loopback"),
        ("[::1]:443", b"loopback"),
        ("localhost:443", b"loopback"),
        ("169.254.169.254:80", b"metadata"),
        ("10.1.2.3:443", b"private"),
        ("[::ffff:10.0.0.1]:443", b"private"),
    ],
)
def test_unrouted_connect_to_local_destinations_is_403(target: str, reason: bytes) -> None:
    s = session()
    out = s.handle(ev.ClientData(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()))
    assert status_of(out) == 403, sent_client(out)
    assert reason in sent_client(out)
    assert not any(isinstance(c, cmd.Resolve | cmd.OpenTunnel) for c in out)


def test_unrouted_connect_resolves_checks_every_address_and_splices() -> None:
    s = session()
    out = s.handle(ev.ClientData(b"CONNECT example.test:443 HTTP/1.1\r\n\r\n"))
    assert out[-1] == cmd.Resolve("example.test", 443)
    out = s.handle(ev.Resolved(s.awaiting, [PUBLIC]))
    assert out == [cmd.OpenTunnel("example.test", 443, (PUBLIC,))]
    out = s.handle(ev.TunnelConnected(s.awaiting))
    assert out[0] == cmd.SendClient(b"HTTP/1.1 200 Connection established\r\n\r\n")
    assert isinstance(out[1], cmd.Splice) and out[1].leftover == b""
    assert s.state is State.SPLICED and s.next_read is Read.DONE


def test_unrouted_connect_with_one_private_address_is_403() -> None:
    s = session()
    s.handle(ev.ClientData(b"CONNECT rebind.test:443 HTTP/1.1\r\n\r\n"))
    out = s.handle(ev.Resolved(s.awaiting, [PUBLIC, ip_address("192.168.1.1")]))
    assert status_of(out) == 403
    assert b"destination 192.168.1.1 is not allowed (private address" in sent_client(out)


def test_connect_to_the_proxy_itself_is_refused() -> None:
    s = session()
    out = s.handle(ev.ClientData(b"CONNECT 127.0.0.1:6790 HTTP/1.1\r\n\r\n"))
    assert status_of(out) == 403


@pytest.mark.parametrize("target", ["api.test", "user@api.test:443", "api.test:0", "api.test:99999", "[::1:443"])
def test_malformed_connect_targets_are_400(target: str) -> None:
    s = session()
    assert status_of(s.handle(ev.ClientData(f"CONNECT {target} HTTP/1.1\r\n\r\n".encode()))) == 400


def test_connect_resolution_failure_is_502() -> None:
    s = session()
    s.handle(ev.ClientData(b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n"))
    out = s.handle(ev.ResolveFailed(s.awaiting, "upstream nowhere.test: name did not resolve"))
    assert status_of(out) == 502


# -- proxy tokens -----------------------------------------------------------------------------------------

TOKEN = "Basic " + base64.b64encode(b"ns:good").decode()


def verifier(value: str) -> str | None:
    return "codex" if value == TOKEN else None


@pytest.mark.parametrize(
    ("target", "header", "expect"),
    [
        ("api.test:443", None, 407),
        ("api.test:443", "Basic Zm9vOmJhcg==", 407),
        ("api.test:443", "Bearer nonsense", 407),
        ("api.test:443", TOKEN, 200),
        ("example.test:443", None, 407),  # unrouted too: tokens for all traffic
        ("example.test:443", "Basic bad", 407),
        ("example.test:443", TOKEN, None),
    ],
)
def test_proxy_tokens(target: str, header: str | None, expect: int | None) -> None:
    s = session(verify_token=verifier)
    extra = f"Proxy-Authorization: {header}\r\n" if header else ""
    out = s.handle(ev.ClientData(f"CONNECT {target} HTTP/1.1\r\n{extra}\r\n".encode()))
    if expect is None:
        assert isinstance(out[-1], cmd.Resolve)
        return
    assert status_of(out) == expect
    if expect == 407:
        assert b'Proxy-Authenticate: Basic realm="cordon"' in sent_client(out)
    else:
        assert s.token_name == "codex"


def test_plain_http_forwarding_needs_a_token_too() -> None:
    request = b"GET http://example.test/x HTTP/1.1\r\nHost: example.test\r\n%s\r\n"
    out = session(verify_token=verifier).handle(ev.ClientData(request % b""))
    assert status_of(out) == 407
    ok = session(verify_token=verifier).handle(ev.ClientData(request % f"Proxy-Authorization: {TOKEN}\r\n".encode()))
    assert isinstance(ok[-1], cmd.Resolve)


def test_a_connection_whose_token_ended_is_refused_at_its_next_request_head() -> None:
    alive = {"codex": True}
    s = session(verify_token=verifier, token_valid=lambda name: alive[name])
    s.handle(ev.ClientData(f"CONNECT api.test:443 HTTP/1.1\r\nProxy-Authorization: {TOKEN}\r\n\r\n".encode()))
    s.handle(ev.ClientTLSReady(s.awaiting, "api.test"))
    forward(s, b"GET /one HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n")
    s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    assert s.state is State.IDLE
    alive["codex"] = False
    out = s.handle(ev.ClientData(b"GET /two HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert status_of(out) == 407 and b"the token has ended" in sent_client(out)
    assert not [c for c in out if isinstance(c, cmd.FetchSecret | cmd.OpenUpstream)] and s.closed


def test_token_name_is_logged_for_requests_in_the_tunnel() -> None:
    s = session(verify_token=verifier)
    s.handle(ev.ClientData(f"CONNECT api.test:443 HTTP/1.1\r\nProxy-Authorization: {TOKEN}\r\n\r\n".encode()))
    s.handle(ev.ClientTLSReady(s.awaiting, "api.test"))
    forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    log = next(c for c in out if isinstance(c, cmd.LogRequest))
    assert log.record.token == "codex"


# -- absolute-form http:// on the plain listener ----------------------------------------------------------


def test_plain_http_to_a_routed_host_is_403() -> None:
    s = session()
    out = s.handle(ev.ClientData(b"GET http://api.test/v1 HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert status_of(out) == 403
    assert b'route "api" requires https' in sent_client(out)
    assert b"X-Cordon-Error: https-required" in sent_client(out)


def test_plain_http_allowed_by_route_injects() -> None:
    s = session()
    _, upstream = forward(s, b"GET http://plain.test/x?q=1 HTTP/1.1\r\nHost: plain.test\r\nAuthorization: Bearer d\r\n\r\n")
    assert upstream.startswith(b"GET /x?q=1 HTTP/1.1\r\nHost: plain.test\r\n")
    assert f"Authorization: Bearer {SECRET}".encode() in upstream


def test_plain_http_unrouted_is_ssrf_checked_and_forwarded_without_proxy_headers() -> None:
    s = session()
    out = s.handle(ev.ClientData(
        b"GET http://example.test:8080/p HTTP/1.1\r\nHost: example.test:8080\r\nProxy-Authorization: Basic eDp5\r\n"
        b"Proxy-Connection: keep-alive\r\nAuthorization: Bearer user-own\r\n\r\n"
    ))
    assert out[-1] == cmd.Resolve("example.test", 8080)
    out = s.handle(ev.Resolved(s.awaiting, [PUBLIC]))
    assert out == [cmd.OpenUpstream("example.test", 8080, None, (PUBLIC,))]
    upstream = sent_upstream(s.handle(ev.UpstreamConnected(s.awaiting)))
    assert upstream.startswith(b"GET /p HTTP/1.1\r\nHost: example.test:8080\r\n")
    assert b"Proxy-" not in upstream
    assert b"Authorization: Bearer user-own" in upstream  # not a routed host: the client's own header is kept


def test_plain_http_unrouted_to_private_address_is_403() -> None:
    s = session()
    s.handle(ev.ClientData(b"GET http://intranet.test/ HTTP/1.1\r\nHost: intranet.test\r\n\r\n"))
    assert status_of(s.handle(ev.Resolved(s.awaiting, [ip_address("10.0.0.5")]))) == 403


# -- WebSocket --------------------------------------------------------------------------------------------

WS_REQUEST = (
    b"GET /ws HTTP/1.1\r\nHost: api.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer dummy\r\n\r\n"
)


def test_websocket_upgrade_is_injected_and_spliced_after_101() -> None:
    s = mitm()
    _, upstream = forward(s, WS_REQUEST)
    hdrs = headers_of(upstream)
    assert ("Upgrade", "websocket") in hdrs and ("Connection", "Upgrade") in hdrs
    assert ("Authorization", f"Bearer {SECRET}") in hdrs
    assert s.next_read is Read.RESPONSE  # nothing is read from the client until the upstream answers
    out = s.handle(ev.UpstreamData(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x02hi"
    ))
    client = sent_client(out)
    assert client.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Upgrade: websocket" in client and b"Connection: Upgrade" in client
    splice = out[-1]
    assert isinstance(splice, cmd.Splice) and splice.upstream and splice.to_client == b"\x81\x02hi"
    assert s.state is State.SPLICED


def test_websocket_refused_by_upstream_is_a_normal_response() -> None:
    s = mitm()
    forward(s, WS_REQUEST)
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 2\r\n\r\nno"))
    assert sent_client(out).startswith(b"HTTP/1.1 403 Forbidden\r\n")
    assert s.tunnel is not None and s.next_read is Read.REQUEST


def test_upgrade_other_than_websocket_is_forwarded_without_upgrade() -> None:
    s = mitm()
    _, upstream = forward(s, b"GET / HTTP/1.1\r\nHost: api.test\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n")
    assert b"Upgrade" not in upstream and b"HTTP2-Settings" not in upstream


def _forward_reused(s: Session, request: bytes) -> bytes:
    s.handle(ev.ClientData(request))
    s.handle(ev.SecretReady(s.awaiting, FakeSecret(SECRET)))
    return sent_upstream(s.handle(ev.UpstreamConnected(s.awaiting, reused=True)))


def test_stale_pooled_connection_is_retried_once_for_idempotent_requests() -> None:
    s = mitm()
    first = _forward_reused(s, b"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamClosed())
    assert out == [cmd.ReleaseUpstream(False), cmd.OpenUpstream("api.test", 443, "api.test", (), fresh=True)]
    again = sent_upstream(s.handle(ev.UpstreamConnected(s.awaiting, reused=False)))
    assert again == first and f"Bearer {SECRET}".encode() in again
    assert status_of(s.handle(ev.UpstreamClosed())) == 502  # only once


@pytest.mark.parametrize(
    "request_bytes",
    [b"POST /x HTTP/1.1\r\nHost: api.test\r\nContent-Length: 1\r\n\r\nx", b"DELETE /x HTTP/1.1\r\nHost: api.test\r\n\r\n"],
)
def test_non_idempotent_requests_are_never_retried(request_bytes: bytes) -> None:
    s = mitm()
    _forward_reused(s, request_bytes)
    assert status_of(s.handle(ev.UpstreamClosed())) == 502


def _logged(commands: list[object]) -> cmd.RequestRecord:
    (log,) = [c for c in commands if isinstance(c, cmd.LogRequest)]
    return log.record


@pytest.mark.parametrize(
    "request_bytes",
    [b"GET /foo HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n", b"GET /health HTTP/1.1\r\nHost: evil.example:6790\r\n\r\n",
     b"CONNECT nope HTTP/1.1\r\nHost: nope\r\n\r\n", b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n"],
)
def test_cordons_own_error_answers_log_the_body_bytes_sent(request_bytes: bytes) -> None:
    out = session().handle(ev.ClientData(request_bytes))
    body = sent_client(out).split(b"\r\n\r\n", 1)[1]
    assert body.startswith(b"cordon: ") and _logged(out).bytes == len(body) and _logged(out).status >= 400


def test_an_error_answered_inside_the_tunnel_logs_its_body_bytes() -> None:
    s = mitm()
    forward(s, b"GET /x HTTP/1.1\r\nHost: api.test\r\n\r\n")
    out = s.handle(ev.UpstreamClosed())  # a fresh connection closed before any response: 502 from cordon
    body = sent_client(out).split(b"\r\n\r\n", 1)[1]
    assert status_of(out) == 502 and body and _logged(out).bytes == len(body)
