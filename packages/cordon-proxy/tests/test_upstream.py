"""Upstream helpers: the verified client context, the test-only resolver override, the pool."""

from __future__ import annotations

import asyncio
import ssl
from ipaddress import ip_address
from pathlib import Path

import pytest
import trustme
from cordon_proxy.upstream import Resolver, UpstreamError, UpstreamPool, client_context, resolve_overrides


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


def test_resolve_overrides_parsing() -> None:
    table = resolve_overrides({"CORDON_TEST_RESOLVE": "API.test.=127.0.0.1, other.test=::1,junk"})
    assert table == {"api.test": [ip_address("127.0.0.1")], "other.test": [ip_address("::1")]}
    assert resolve_overrides({}) == {}


def test_resolver_uses_literals_and_overrides_without_dns() -> None:
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
