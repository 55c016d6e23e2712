"""Upstream helpers: the verified client context (cordon's own choice of roots), the resolver, the pool."""

from __future__ import annotations

import asyncio
import ssl
from ipaddress import ip_address
from pathlib import Path

import pytest
import trustme
from cordon_proxy.upstream import (
    Resolver,
    Upstream,
    UpstreamError,
    UpstreamPool,
    client_context,
)


def test_client_context_always_verifies_and_adds_extra_roots(tmp_path: Path) -> None:
    ca = trustme.CA()
    path = tmp_path / "extra.pem"
    ca.cert_pem.write_to_path(str(path))
    plain = client_context()
    extra = client_context(path)
    for ctx in (plain, extra):
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert extra.cert_store_stats()["x509_ca"] == plain.cert_store_stats()["x509_ca"] + 1  # added, not replaced


def test_resolver_reads_nothing_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import cordon_proxy.upstream as upstream

    monkeypatch.setenv("CORDON_TEST_RESOLVE", "api.test=127.0.0.2")
    assert Resolver().overrides == {}
    assert "CORDON_TEST_RESOLVE" not in Path(upstream.__file__).read_text()


def test_resolver_uses_literals_and_its_table_without_dns() -> None:
    resolver = Resolver({"api.test": [ip_address("127.0.0.2")]})

    async def main() -> tuple[object, object]:
        return await resolver.resolve("api.test", 443), await resolver.resolve("127.1", 443)

    assert asyncio.run(main()) == ([ip_address("127.0.0.2")], [ip_address("127.0.0.1")])


def test_pool_reports_refused_connections_and_verification_failures() -> None:
    async def main() -> tuple[UpstreamError, UpstreamError]:
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        ca = trustme.CA()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ca.issue_cert("api.test").configure_cert(ctx)
        tls_server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0, ssl=ctx)
        tls_port = tls_server.sockets[0].getsockname()[1]
        server.close()
        await server.wait_closed()
        pool = UpstreamPool(client_context(), Resolver({"api.test": [ip_address("127.0.0.1")]}), connect_timeout=5)
        with pytest.raises(UpstreamError) as refused:
            await pool.connect_tls("api.test", port, "api.test")
        with pytest.raises(UpstreamError) as untrusted:
            await pool.connect_tls("api.test", tls_port, "api.test")
        tls_server.close()
        await tls_server.wait_closed()
        return refused.value, untrusted.value

    refused, untrusted = asyncio.run(main())
    assert refused.code == "upstream-failed" and refused.message.startswith("upstream api.test: ")
    assert untrusted.code == "upstream-tls"
    assert untrusted.message.startswith("upstream TLS verification failed for api.test: ")


# -- the idle pool (fake connections, injected clock: no sockets, no sleeping) ---------------------------------


class FakeReader:
    def __init__(self) -> None:
        self.eof = False
        self._buffer = bytearray()

    def at_eof(self) -> bool:
        return self.eof


class FakeTransport:
    def __init__(self) -> None:
        self.aborted = False

    def abort(self) -> None:
        self.aborted = True


class FakeWriter:
    def __init__(self) -> None:
        self.transport = FakeTransport()

    def is_closing(self) -> bool:
        return self.transport.aborted


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


KEY = ("api.test", 443, "api.test")


def fake(key: tuple[str, int, str | None] = KEY) -> Upstream:
    return Upstream(FakeReader(), FakeWriter(), key)  # type: ignore[arg-type]


def closed(conn: Upstream) -> bool:
    return conn.writer.transport.aborted  # type: ignore[attr-defined, no-any-return]


def pool(clock: Clock, *, max_idle: int = 64, idle_timeout: float = 30.0) -> UpstreamPool:
    return UpstreamPool(client_context(), Resolver(), max_idle=max_idle, idle_timeout=idle_timeout, clock=clock)


def test_pool_keeps_at_most_max_idle_connections_per_key() -> None:
    p = pool(Clock(), max_idle=2)
    a, b, c, other = fake(), fake(), fake(), fake(("other.test", 443, "other.test"))
    for conn in (a, b, c, other):
        p.release(conn, reusable=True)
    assert not closed(a) and not closed(b) and closed(c)  # the third idle one for api.test is closed at once
    assert not closed(other)  # the bound is per (host, port, tls name)
    assert {id(p.checkout(*KEY)), id(p.checkout(*KEY))} == {id(a), id(b)}
    assert p.checkout(*KEY) is None
    assert p.checkout("other.test", 443, "other.test") is other


def test_pool_never_keeps_plain_or_unreusable_connections() -> None:
    p = pool(Clock())
    plain, spent = fake(("plain.test", 80, None)), fake()
    p.release(plain, reusable=True)
    p.release(spent, reusable=False)
    assert closed(plain) and closed(spent) and p.checkout(*KEY) is None


def test_sweep_closes_connections_idle_longer_than_the_idle_timeout() -> None:
    clock = Clock()
    p = pool(clock, idle_timeout=30)
    old = fake()
    p.release(old, reusable=True)
    clock.now += 20
    young = fake()
    p.release(young, reusable=True)
    clock.now += 10  # old: idle 30 s (expired), young: 10 s
    p.sweep()
    assert closed(old) and not closed(young)
    clock.now += 19.9
    p.sweep()
    assert not closed(young)
    clock.now += 0.1
    p.sweep()
    assert closed(young) and p.checkout(*KEY) is None


def test_sweep_closes_connections_the_upstream_closed() -> None:
    p = pool(Clock())
    gone, chatty, fine = fake(), fake(), fake()
    for conn in (gone, chatty, fine):
        p.release(conn, reusable=True)
    gone.reader.eof = True  # type: ignore[attr-defined]
    chatty.reader._buffer += b"HTTP/1.1 408 Request Timeout\r\n"  # type: ignore[attr-defined]
    p.sweep()
    assert closed(gone) and closed(chatty) and not closed(fine)
    assert p.checkout(*KEY) is fine


def test_an_expired_or_upstream_closed_connection_is_never_handed_out() -> None:
    clock = Clock()
    p = pool(clock, idle_timeout=30)
    good, expired = fake(), fake()
    p.release(good, reusable=True)
    p.release(expired, reusable=True)  # last in, first out: looked at first
    expired.idle_since = clock.now - 30  # idle for exactly the timeout: expired
    assert p.checkout(*KEY) is good and good.reused and closed(expired)
    for break_it in (lambda c: setattr(c.reader, "eof", True), lambda c: c.reader._buffer.extend(b"x"),
                     lambda c: c.close(), lambda c: setattr(c, "write_failed", True)):
        conn = fake()
        p.release(conn, reusable=True)
        break_it(conn)
        assert p.checkout(*KEY) is None and closed(conn)
    late = fake()
    p.release(late, reusable=True)
    clock.now += 30  # exactly the idle timeout: expired
    assert p.checkout(*KEY) is None and closed(late)


def test_connect_tls_skips_a_stale_pooled_connection() -> None:
    clock = Clock()
    p = pool(clock, idle_timeout=30)
    stale = fake()
    p.release(stale, reusable=True)
    stale.reader.eof = True  # type: ignore[attr-defined]

    async def main() -> UpstreamError:
        with pytest.raises(UpstreamError) as info:  # not the stale one: a new connection, which fails here
            await p.connect_tls("api.test", 443, "api.test")
        return info.value

    p.resolver = Resolver({"api.test": []})
    assert asyncio.run(main()).code == "upstream-failed" and closed(stale)
