"""Least privilege in the sans-IO core: method/path rules, rate limits, egress policy, scrubbing the key from
responses, and the decision each request is audited with. Events in, commands out; no sockets."""

from __future__ import annotations

import base64
import gzip
import json
import random
import zlib
from ipaddress import ip_address
from urllib.parse import quote

import pytest
from cordon_config.model import BasicAuth, Egress, HeaderAuth, RateLimit, Route, SecretRef
from cordon_proxy.core import commands as cmd
from cordon_proxy.core import events as ev
from cordon_proxy.core.admission import EgressPolicy, RateLimiter, rule_refusal
from cordon_proxy.core.decoders import available_codings
from cordon_proxy.core.scrub import Masker, Scrubber, key_patterns, narrow_accept_encoding
from cordon_proxy.core.session import Session, Settings, SettingsRef
from cordon_proxy.core.states import ProtocolError, State

SECRET = "sk-real-0123456789abcdef"
ENV = SecretRef("env", {"var": "X"})
RULED = Route("api", "api.test", HeaderAuth("Authorization", "Bearer"), ENV, methods=("POST", "GET"),
              paths=("/v1/responses", "/v1/models*"))
LIMITED = Route("limited", "limited.test", HeaderAuth("x-api-key"), ENV, rate_limit=RateLimit(60, 2))
OPEN = Route("open", "open.test", HeaderAuth("Authorization", "Bearer"), ENV)
RAW = Route("raw", "raw.test", HeaderAuth("Authorization", "Bearer"), ENV, scrub_responses=False)
BASIC = Route("basic", "basic.test", BasicAuth("user"), ENV)
ROUTES = (RULED, LIMITED, OPEN, RAW, BASIC)
PUBLIC = ip_address("93.184.216.34")


class FakeSecret:
    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def settings(egress: Egress | None = None) -> Settings:
    policy = EgressPolicy(egress or Egress())
    return Settings(routes=ROUTES, listen_port=6790, egress=policy)


def sent_client(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, cmd.SendClient))


def sent_upstream(commands: list[object]) -> bytes:
    return b"".join(c.data for c in commands if isinstance(c, cmd.SendUpstream))


def records(commands: list[object]) -> list[cmd.RequestRecord]:
    return [c.record for c in commands if isinstance(c, cmd.LogRequest)]


def mitm(host: str, ref: SettingsRef | None = None) -> Session:
    s = Session(ref or SettingsRef(settings(), clock=Clock()))
    s.handle(ev.ClientData(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode()))
    s.handle(ev.ClientTLSReady(s.awaiting, host))
    assert s.state is State.IDLE and s.tunnel is not None
    return s


def forward(s: Session, request: bytes) -> list[object]:
    """A routed request through secret and upstream connection; returns every command."""
    out = s.handle(ev.ClientData(request))
    assert isinstance(out[-1], cmd.FetchSecret), out
    out += s.handle(ev.SecretReady(s.awaiting, FakeSecret(SECRET)))
    out += s.handle(ev.UpstreamConnected(s.awaiting))
    return out


def get(path: str, host: str = "api.test", method: str = "GET", extra: str = "") -> bytes:
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n".encode()


# -- method and path rules -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "target", "allowed"), [
    ("POST", "/v1/responses", True),
    ("GET", "/v1/models", True),
    ("GET", "/v1/models/gpt-4?x=1", True),  # the query is not part of the path
    ("GET", "/v1/%6Dodels", True),  # an escaped unreserved character is the character
    ("DELETE", "/v1/models", False),
    ("GET", "/v1/files", False),
    ("GET", "/v1/responses/x", False),
    ("GET", "/v1/models/../files", False),
    ("GET", "/v1/models/%2e%2e/files", False),
    ("GET", "/v1/models%2F..%2Ffiles", False),
    ("GET", "/v1/models/..;/files", False),
    ("GET", "/v1/models//x", False),
    ("GET", "/v1/models\\x", False),
    ("GET", "/v1/models%252F", False),
])
def test_rules_admit_or_refuse_before_any_secret(method: str, target: str, allowed: bool) -> None:
    s = mitm("api.test")
    out = s.handle(ev.ClientData(f"{method} {target} HTTP/1.1\r\nHost: api.test\r\n\r\n".encode()))
    if allowed:
        assert isinstance(out[-1], cmd.FetchSecret)
        return
    assert not any(isinstance(c, cmd.FetchSecret | cmd.OpenUpstream | cmd.SendUpstream) for c in out)
    answer = sent_client(out)
    assert answer.startswith(b"HTTP/1.1 403 ") and b"X-Cordon-Error: route-policy" in answer
    assert b'route "api"' in answer
    (record,) = records(out)
    assert (record.status, record.error, record.decision) == (403, "route-policy", "denied")
    assert s.closed


def test_a_lower_case_method_never_reaches_the_rules() -> None:
    s = mitm("api.test")
    out = s.handle(ev.ClientData(b"post /v1/responses HTTP/1.1\r\nHost: api.test\r\n\r\n"))
    assert sent_client(out).startswith(b"HTTP/1.1 400 ")  # the parser refuses it: methods are case-sensitive
    assert not any(isinstance(c, cmd.FetchSecret) for c in out)


def test_rule_refusal_messages_name_what_is_allowed() -> None:
    assert rule_refusal(RULED, "DELETE", "/v1/models") == \
        'route "api" does not allow method DELETE (allowed: POST, GET)'
    assert rule_refusal(RULED, "GET", "/v1/files?a=b") == \
        'route "api" does not allow the path /v1/files (allowed: /v1/responses, /v1/models*)'
    assert "ambiguous (an encoded slash (%2F))" in (rule_refusal(RULED, "GET", "/v1/a%2Fb") or "")
    assert rule_refusal(OPEN, "DELETE", "/v1/a%2Fb/../x") is None  # no rules: nothing is checked


def test_a_route_with_only_methods_accepts_any_path() -> None:
    route = Route("m", "m.test", HeaderAuth("x-api-key"), ENV, methods=("GET",))
    assert rule_refusal(route, "GET", "/anything/%2F/../x") is None
    assert rule_refusal(route, "POST", "/") is not None


# -- rate limits ------------------------------------------------------------------------------------------


def test_token_bucket() -> None:
    limiter = RateLimiter()
    limit = RateLimit(60, 2)  # one a second, bursts of two
    assert limiter.take("r", limit, 0.0) == 0.0
    assert limiter.take("r", limit, 0.0) == 0.0
    assert limiter.take("r", limit, 0.0) == pytest.approx(1.0)
    assert limiter.take("r", limit, 0.5) == pytest.approx(0.5)
    assert limiter.take("r", limit, 1.0) == 0.0
    assert limiter.take("r", limit, 100.0) == 0.0 and limiter.take("r", limit, 100.0) == 0.0  # refilled to 2
    assert limiter.take("r", limit, 100.0) > 0
    assert limiter.take("other", limit, 100.0) == 0.0  # per route
    assert limiter.take("r", RateLimit(6000), 100.01) == 0.0  # a raised limit refills faster from the same level


def test_rate_limit_answers_429_with_retry_after_across_connections() -> None:
    clock = Clock()
    ref = SettingsRef(settings(), clock=clock)
    first, second = mitm("limited.test", ref), mitm("limited.test", ref)
    for s in (first, second):  # the burst of 2 is shared by every connection to the route
        out = forward(s, get("/x", "limited.test"))
        out += s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
        assert records(out)[0].decision == "injected"
    out = first.handle(ev.ClientData(get("/x", "limited.test")))
    answer = sent_client(out)
    assert answer.startswith(b"HTTP/1.1 429 ") and b"X-Cordon-Error: rate-limited" in answer
    assert b"Retry-After: 1\r\n" in answer and b"allows 60 requests per minute" in answer
    assert not any(isinstance(c, cmd.FetchSecret) for c in out)
    (record,) = records(out)
    assert (record.status, record.decision, record.error) == (429, "rate-limited", "rate-limited")
    clock.now += 1.0
    assert isinstance(second.handle(ev.ClientData(get("/x", "limited.test")))[-1], cmd.FetchSecret)


def test_rate_limits_survive_a_settings_swap() -> None:
    clock = Clock()
    ref = SettingsRef(settings(), clock=clock)
    for _ in range(2):
        s = mitm("limited.test", ref)
        s.handle(ev.ClientData(get("/x", "limited.test")))
    ref.swap(settings())  # a reload: the bucket stays empty
    out = mitm("limited.test", ref).handle(ev.ClientData(get("/x", "limited.test")))
    assert sent_client(out).startswith(b"HTTP/1.1 429 ")


def test_a_rate_limit_without_the_edges_clock_is_a_bug() -> None:
    s = mitm("limited.test", SettingsRef(settings()))
    with pytest.raises(ProtocolError, match="clock"):
        s.handle(ev.ClientData(get("/x", "limited.test")))


# -- egress ----------------------------------------------------------------------------------------------


DENY = Egress("deny", ("github.com", "*.npmjs.org", "93.184.216.34"))


@pytest.mark.parametrize(("target", "allowed"), [
    ("github.com:443", True),
    ("GitHub.COM.:443", True),
    ("registry.npmjs.org:443", True),
    ("a.b.npmjs.org:443", True),
    ("npmjs.org:443", False),
    ("api.github.com:443", False),
    ("evil.test:443", False),
    ("93.184.216.34:443", True),
    ("1572395042:443", True),  # the same address, spelled as one number
    ("93.184.216.35:443", False),
])
def test_egress_deny_mode_for_connect(target: str, allowed: bool) -> None:
    s = Session(settings(DENY))
    out = s.handle(ev.ClientData(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()))
    if allowed:
        assert isinstance(out[-1], cmd.Resolve | cmd.OpenTunnel), out
        return
    answer = sent_client(out)
    host = target.rsplit(":", 1)[0].lower().rstrip(".")
    assert answer.startswith(b"HTTP/1.1 403 ") and b"X-Cordon-Error: egress-denied" in answer
    assert f"egress to {host} is denied".encode() in answer
    assert f"cordon egress allow {host}".encode() in answer
    assert not any(isinstance(c, cmd.Resolve | cmd.OpenTunnel) for c in out)
    (record,) = records(out)
    assert (record.decision, record.error, record.route) == ("denied", "egress-denied", None)


def test_egress_deny_mode_for_plain_http_and_routes_unaffected() -> None:
    s = Session(settings(DENY))
    out = s.handle(ev.ClientData(b"GET http://evil.test/x HTTP/1.1\r\nHost: evil.test\r\n\r\n"))
    assert b"X-Cordon-Error: egress-denied" in sent_client(out)
    s = Session(settings(DENY))
    out = s.handle(ev.ClientData(b"GET http://github.com/x HTTP/1.1\r\nHost: github.com\r\n\r\n"))
    assert isinstance(out[-1], cmd.Resolve)
    routed = mitm("open.test", SettingsRef(settings(DENY)))  # a route is always allowed
    assert isinstance(routed.handle(ev.ClientData(get("/", "open.test")))[-1], cmd.FetchSecret)


def test_tunnel_mode_passes_everything_to_the_ssrf_check() -> None:
    s = Session(settings())
    out = s.handle(ev.ClientData(b"CONNECT evil.test:443 HTTP/1.1\r\nHost: evil.test:443\r\n\r\n"))
    assert isinstance(out[-1], cmd.Resolve)
    out = s.handle(ev.Resolved(s.awaiting, [PUBLIC]))
    assert isinstance(out[-1], cmd.OpenTunnel)
    assert records(out) == []  # an allowed tunnel is no policy decision: not audited


def test_ssrf_refusals_are_audited_as_denied() -> None:
    s = Session(settings())
    out = s.handle(ev.ClientData(b"CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\n\r\n"))
    (record,) = records(out)
    assert (record.error, record.decision) == ("blocked", "denied")


# -- scrubbing --------------------------------------------------------------------------------------------


def patterns(route: Route = OPEN) -> tuple[bytes, ...]:
    return key_patterns(route, SECRET)


def test_key_patterns_cover_the_forms_the_issue_names() -> None:
    found = patterns()
    raw = SECRET.encode()
    assert raw in found
    assert base64.b64encode(raw)[: len(raw) * 8 // 6] in found
    assert all(len(p) >= 8 for p in found)
    tricky = key_patterns(OPEN, 'a/b+c"d\\e f')
    assert quote('a/b+c"d\\e f', safe="").encode() in tricky
    assert b"a%2fb%2bc%22d%5ce%20f" in tricky  # the same with lower-case hex digits
    assert json.dumps('a/b+c"d\\e f')[1:-1].encode() in tricky and b'a\\/b+c\\"d\\\\e f' in tricky
    basic = key_patterns(BASIC, SECRET)
    assert base64.b64encode(f"user:{SECRET}".encode())[:30] in b"".join(basic)


def _split_everywhere(data: bytes) -> list[list[bytes]]:
    """Every split of ``data`` into two pieces, plus random splits into many."""
    splits = [[data[:i], data[i:]] for i in range(len(data) + 1)]
    rng = random.Random(19)
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(data)), rng.randint(1, 12)))
        splits.append([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
    return splits


def test_masker_finds_every_form_across_any_split() -> None:
    raw = SECRET.encode()
    body = (b"{\"echo\": \"" + raw + b"\", \"b64\": \"" + base64.b64encode(raw) + b"\", \"url\": \"" +
            base64.urlsafe_b64encode(raw + b"!") + b"\", \"tail\": \"sk-real-0123\"}")
    for pieces in _split_everywhere(body):
        masker = Masker(patterns())
        out = b"".join(masker.feed(piece) for piece in pieces) + masker.finish()
        assert len(out) == len(body)
        assert raw not in out and base64.b64encode(raw)[:20] not in out
        assert out.endswith(b'"tail": "sk-real-0123"}')  # a prefix alone is not the key
        assert masker.count == 3


def test_masker_holds_nothing_back_after_an_sse_event() -> None:
    masker = Masker(patterns())
    event = b'data: {"delta": "tok"}\n\n'
    assert masker.feed(event) == event and masker.tail == b""


def test_scrubber_cuts_a_compressed_body_holding_the_key_and_never_sends_its_prefix() -> None:
    raw = SECRET.encode()
    body = gzip.compress(b"x" * 5000 + raw + b"y" * 100)
    for step in (1, 3, 64, 4096, len(body)):
        scrubber = Scrubber(patterns())
        assert scrubber.start(["gzip"]) is None
        sent = b""
        for start in range(0, len(body), step):
            sent += scrubber.feed(body[start : start + step])
            if scrubber.cut:
                break
        else:
            sent += scrubber.finish()
        assert scrubber.cut and "holds the key" in scrubber.reason
        visible = zlib.decompressobj(31).decompress(sent)
        assert b"sk-" not in visible  # not even the start of the key was sent


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip,br"])
def test_scrubber_passes_clean_compressed_bodies_unchanged(coding: str) -> None:
    if not set(coding.split(",")) <= available_codings():
        pytest.skip(f"no decoder for {coding} here")
    body = _compress(b"hello " * 20000, coding)
    scrubber = Scrubber(patterns())
    assert scrubber.start(coding.split(",")) is None
    out = b"".join(scrubber.feed(body[i : i + 1000]) for i in range(0, len(body), 1000)) + scrubber.finish()
    assert out == body and not scrubber.cut


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd", "gzip,br"])
def test_scrubber_finds_the_key_in_each_coding(coding: str) -> None:
    if not set(coding.split(",")) <= available_codings():
        pytest.skip(f"no decoder for {coding} here")
    body = _compress(b"a" * 70000 + base64.b64encode(SECRET.encode()) + b"z", coding)
    scrubber = Scrubber(patterns())
    scrubber.start(coding.split(","))
    for i in range(0, len(body), 777):
        scrubber.feed(body[i : i + 777])
        if scrubber.cut:
            break
    else:
        scrubber.finish()
    assert scrubber.cut


def _compress(data: bytes, coding: str) -> bytes:
    for name in coding.split(","):
        if name == "gzip":
            data = gzip.compress(data)
        elif name == "deflate":
            data = zlib.compress(data)
        elif name == "br":
            import brotli  # type: ignore[import-untyped]

            data = brotli.compress(data)
        else:
            import zstandard

            data = zstandard.ZstdCompressor().compress(data)
    return data


def test_a_corrupt_compressed_body_is_cut() -> None:
    scrubber = Scrubber(patterns())
    scrubber.start(["gzip"])
    scrubber.feed(b"\x1f\x8b\x08\x00garbage-that-is-not-deflate" * 10)
    assert scrubber.cut and "could not be decoded" in scrubber.reason


def test_accept_encoding_lists_only_what_cordon_decodes() -> None:
    assert narrow_accept_encoding((b"gzip, deflate, compress;q=0.5, identity",)) == b"gzip, deflate, identity"
    assert narrow_accept_encoding((b"compress",)) == b"identity"
    star = narrow_accept_encoding((b"*;q=0.1",))
    assert b"gzip;q=0.1" in star and b"*" not in star


def _respond(s: Session, response: bytes, pieces: int = 1) -> list[object]:
    out: list[object] = []
    size = max(1, len(response) // pieces)
    for start in range(0, len(response), size):
        out += s.handle(ev.UpstreamData(response[start : start + size]))
    return out


def test_the_key_echoed_in_headers_and_body_reaches_the_client_masked() -> None:
    raw = SECRET.encode()
    body = b'{"headers": {"authorization": "Bearer ' + raw + b'"}, "b64": "' + base64.b64encode(raw) + b'"}'
    response = (b"HTTP/1.1 200 OK\r\nX-Echo: Bearer " + raw + b"\r\nContent-Length: " + str(len(body)).encode() +
                b"\r\n\r\n" + body)
    for pieces in (1, 7, len(response)):
        s = mitm("open.test")
        forward(s, get("/echo", "open.test"))
        out = _respond(s, response, pieces)
        client = sent_client(out)
        head, sent_body = client.split(b"\r\n\r\n", 1)
        assert raw not in client and base64.b64encode(raw)[:24] not in client
        assert b"X-Echo: Bearer " + b"*" * len(raw) in head
        assert len(sent_body) == len(body) and f"Content-Length: {len(body)}".encode() in head
        (record,) = records(out)
        assert (record.decision, record.scrubbed, record.status) == ("scrubbed", 3, 200)


def test_a_chunked_body_split_mid_key_is_masked() -> None:
    raw = SECRET.encode()
    half = len(raw) // 2
    response = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
                b"%x\r\n%s\r\n" % (half + 5, b"echo:" + raw[:half]) +
                b"%x\r\n%s\r\n" % (len(raw) - half, raw[half:]) + b"0\r\n\r\n")
    s = mitm("open.test")
    forward(s, get("/echo", "open.test"))
    out = s.handle(ev.UpstreamData(response[:60]))
    out += s.handle(ev.UpstreamData(response[60:]))
    body = sent_client(out).split(b"\r\n\r\n", 1)[1]
    assert raw[:half] not in body and raw[half:] not in body
    assert dechunk(body) == b"echo:" + b"*" * len(raw)


def dechunk(body: bytes) -> bytes:
    """The data of a complete chunked body."""
    out = b""
    while True:
        size_line, body = body.split(b"\r\n", 1)
        size = int(size_line, 16)
        if not size:
            return out
        out, body = out + body[:size], body[size + 2 :]


def test_a_gzip_body_with_the_key_is_cut_and_logged() -> None:
    body = gzip.compress(b'{"echo": "' + SECRET.encode() + b'"}')
    response = (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: " + str(len(body)).encode() +
                b"\r\n\r\n" + body)
    s = mitm("open.test")
    forward(s, get("/echo", "open.test", extra="Accept-Encoding: gzip, br, compress\r\n"))
    out = s.handle(ev.UpstreamData(response))
    assert cmd.CloseClient(abort=True) in out
    assert SECRET.encode() not in zlib.decompressobj(31).decompress(sent_client(out).split(b"\r\n\r\n", 1)[1])
    (record,) = records(out)
    assert (record.decision, record.error) == ("scrubbed", "key-in-response")


def test_accept_encoding_is_narrowed_upstream_and_an_unscannable_coding_is_502() -> None:
    s = mitm("open.test")
    out = forward(s, get("/x", "open.test", extra="Accept-Encoding: gzip, compress, br\r\n"))
    upstream = sent_upstream(out)
    assert b"compress" not in upstream and b"Accept-Encoding: gzip" in upstream
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Encoding: compress\r\nContent-Length: 3\r\n\r\nabc"))
    answer = sent_client(out)
    assert answer.startswith(b"HTTP/1.1 502 ") and b"X-Cordon-Error: unscannable-response" in answer
    assert b"abc" not in answer


def test_a_route_that_does_not_scrub_relays_the_key_as_it_comes() -> None:
    s = mitm("raw.test")
    out = forward(s, get("/x", "raw.test", extra="Accept-Encoding: compress\r\n"))
    assert b"Accept-Encoding: compress" in sent_upstream(out)  # left alone too
    body = SECRET.encode()
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)))
    assert sent_client(out).endswith(body)
    assert records(out)[0].decision == "injected"


def test_a_head_response_is_not_scrubbed_as_a_body() -> None:
    s = mitm("open.test")
    forward(s, get("/x", "open.test", method="HEAD"))
    out = s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\nContent-Encoding: compress\r\n\r\n"))
    assert sent_client(out).startswith(b"HTTP/1.1 200 ")  # no body, so no coding to refuse


# -- decisions ---------------------------------------------------------------------------------------------


def test_decisions_of_routed_requests() -> None:
    s = mitm("open.test")
    out = forward(s, get("/x", "open.test", method="POST", extra="Content-Length: 3\r\n") + b"abc")
    out += s.handle(ev.UpstreamData(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    (record,) = records(out)
    assert (record.decision, record.bytes_up, record.bytes) == ("injected", 3, 2)
    s = mitm("open.test")
    s.handle(ev.ClientData(get("/x", "open.test")))
    out = s.handle(ev.SecretFailed(s.awaiting, "no secret"))
    assert records(out)[0].decision == "failed"
    s = Session(settings())
    out = s.handle(ev.ClientData(b"GET http://open.test/ HTTP/1.1\r\nHost: open.test\r\n\r\n"))
    assert records(out)[0].decision == "denied"  # https-required
    s = Session(settings())
    out = s.handle(ev.ClientData(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1:6790\r\n\r\n"))
    assert records(out)[0].decision is None  # not routed, no policy decision: not audited
