"""LeafContextCache: real handshakes through cached contexts, LRU bound, renewal, host restrictions."""

from __future__ import annotations

import shutil
import socket
import ssl
import stat
import time
from pathlib import Path

import pytest
from cordon_ca import (
    CertificateAuthority,
    HostNotAllowed,
    LeafContextCache,
    load_or_create_ca,
    server_context,
)
from cordon_ca.contexts import scratch_root
from cordon_testing.tls import python_handshake, serving, write_pem


@pytest.fixture
def ca(tmp_path: Path) -> CertificateAuthority:
    return load_or_create_ca(tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem", namespace="cache")


def test_context_serves_verified_handshake(ca: CertificateAuthority, tmp_path: Path) -> None:
    cache = LeafContextCache(ca, allowed_hosts=None)
    ctx = cache.get("api.test")
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    with serving(ctx) as server:
        assert python_handshake(server.port, "api.test", ca_file, alpn=["h2", "http/1.1"]) == "http/1.1"
        with pytest.raises(ssl.SSLCertVerificationError):
            python_handshake(server.port, "other.test", ca_file)


def tls12_handshake(port: int, cafile: Path, ciphers: str) -> str:
    """A TLS 1.2 handshake offering only ``ciphers``; returns the suite agreed."""
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(ciphers)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, ctx.wrap_socket(
        raw, server_hostname="api.test"
    ) as tls:
        cipher = tls.cipher()
        assert cipher is not None
        return cipher[0]


def test_tls12_accepts_only_forward_secret_aead_suites(ca: CertificateAuthority, tmp_path: Path) -> None:
    ca_file = write_pem(tmp_path / "ca.pem", ca.cert_pem)
    with serving(LeafContextCache(ca, allowed_hosts=None).get("api.test")) as server:
        for suite in ("ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384",
                      "ECDHE-ECDSA-CHACHA20-POLY1305"):
            assert tls12_handshake(server.port, ca_file, suite) == suite
        for legacy in ("ECDHE-ECDSA-AES128-SHA256", "ECDHE-ECDSA-AES256-SHA384", "ECDHE-ECDSA-AES128-SHA"):
            with pytest.raises(ssl.SSLError):  # CBC: refused even when it is all the client offers
                tls12_handshake(server.port, ca_file, legacy)


def test_hit_returns_same_context_and_normalises(ca: CertificateAuthority) -> None:
    cache = LeafContextCache(ca, allowed_hosts=None)
    first = cache.get("api.test")
    assert cache.get("api.test") is first
    assert cache.get("API.test.") is first
    assert (cache.hits, cache.misses) == (2, 1)
    assert len(cache) == 1


def test_lru_bound(ca: CertificateAuthority) -> None:
    cache = LeafContextCache(ca, maxsize=2, allowed_hosts=None)
    a = cache.get("a.test")
    cache.get("b.test")
    cache.get("a.test")  # a is now most recent
    cache.get("c.test")  # evicts b
    assert "a.test" in cache and "c.test" in cache and "b.test" not in cache
    assert len(cache) == 2
    assert cache.get("a.test") is a


def test_renewed_when_less_than_a_quarter_left(ca: CertificateAuthority) -> None:
    now = [time.time()]
    cache = LeafContextCache(ca, clock=lambda: now[0], allowed_hosts=None)
    first = cache.get("api.test")
    now[0] += 20 * 86400  # 10 of ~30 days left: still more than 25 %
    assert cache.get("api.test") is first
    now[0] += 3 * 86400  # ~7 days left: renew
    second = cache.get("api.test")
    assert second is not first
    assert cache.misses == 2


def test_allowed_hosts(ca: CertificateAuthority) -> None:
    cache = LeafContextCache(ca, allowed_hosts=["API.test"])
    cache.get("api.test")
    with pytest.raises(HostNotAllowed):
        cache.get("evil.test")
    with pytest.raises(HostNotAllowed):
        cache.get("127.0.0.1")


def test_scratch_files_are_private_and_removed(
    ca: CertificateAuthority, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    assert scratch_root() == str(runtime)
    cache = LeafContextCache(ca, allowed_hosts=None)
    for host in ("a.test", "b.test", "c.test"):
        cache.get(host)
    (scratch,) = runtime.iterdir()
    assert stat.S_IMODE(scratch.stat().st_mode) == 0o700
    assert list(scratch.iterdir()) == []  # leaf PEMs are unlinked as soon as they are loaded
    shutil.rmtree(scratch)  # a tmp cleaner removed it: the next miss makes a new one
    cache.get("d.test")
    cache.close()
    assert list(runtime.iterdir()) == []
    server_context(*ca.issue_leaf("e.test"))
    assert list(runtime.iterdir()) == []


def test_scratch_root_ignores_shared_runtime_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(shared))
    assert scratch_root() != str(shared)


def test_invalid_maxsize(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError):
        LeafContextCache(ca, maxsize=0, allowed_hosts=None)


def test_concurrent_gets_from_threads(ca: CertificateAuthority) -> None:
    import concurrent.futures

    cache = LeafContextCache(ca, maxsize=4, allowed_hosts=None)
    hosts = [f"h{i % 6}.test" for i in range(60)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        contexts = list(pool.map(cache.get, hosts, timeout=60))
    assert all(isinstance(c, ssl.SSLContext) for c in contexts)
    assert len(cache) == 4
    cache.close()
