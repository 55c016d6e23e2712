"""The combined bundle: system store + cordon CA, atomic, 0644, usable by a real client."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from cordon_ca import BundleError, load_or_create_ca, server_context, write_combined_bundle
from cordon_ca import bundle as bundle_mod
from cordon_testing.tls import python_handshake, serving
from cryptography import x509


@pytest.fixture
def ca(tmp_path: Path):
    return load_or_create_ca(tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem", namespace="bundle")


def test_first_existing_candidate_then_ca(ca, tmp_path: Path) -> None:
    other = load_or_create_ca(tmp_path / "o/ca-cert.pem", tmp_path / "o/ca-key.pem", namespace="sys")
    system = tmp_path / "system.pem"
    system.write_bytes(other.cert_pem.rstrip(b"\n"))  # no trailing newline: must still be separated
    out = write_combined_bundle(
        ca.cert_path, tmp_path / "certs/combined-ca.pem", candidates=[tmp_path / "missing.pem", system]
    )
    data = out.read_bytes()
    assert data.startswith(other.cert_pem.rstrip(b"\n"))
    assert data.endswith(ca.cert_pem)
    certs = x509.load_pem_x509_certificates(data)
    assert [c.subject for c in certs] == [other.cert.subject, ca.cert.subject]
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_rebuild_replaces_atomically(ca, tmp_path: Path) -> None:
    system = tmp_path / "system.pem"
    system.write_bytes(b"")
    out = tmp_path / "certs/combined-ca.pem"
    out.write_text("stale")
    other = tmp_path / "s2.pem"
    other.write_bytes(ca.cert_pem)
    write_combined_bundle(ca.cert_path, out, candidates=[system, other])  # empty file skipped
    assert out.read_bytes().count(b"BEGIN CERTIFICATE") == 2


def test_real_system_store_and_handshake(ca, tmp_path: Path) -> None:
    if bundle_mod.find_system_bundle() is None:
        pytest.skip("no system CA bundle on this machine")
    out = write_combined_bundle(ca.cert_path, tmp_path / "combined.pem")
    data = out.read_bytes()
    assert data.count(b"BEGIN CERTIFICATE") > 10 and data.endswith(ca.cert_pem)
    with serving(server_context(*ca.issue_leaf("api.test"))) as server:
        python_handshake(server.port, "api.test", out)


def test_certifi_only_as_last_resort(ca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "certifi.pem"
    fake.write_bytes(b"# certifi\n")
    monkeypatch.setattr(bundle_mod, "_certifi_where", lambda: str(fake))
    system = tmp_path / "sys.pem"
    system.write_bytes(b"# system\n")
    assert bundle_mod.find_system_bundle([system]) == system
    assert bundle_mod.find_system_bundle([tmp_path / "none"]) == fake


def test_no_store_at_all(ca, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bundle_mod, "_certifi_where", lambda: None)
    with pytest.raises(BundleError) as info:
        write_combined_bundle(ca.cert_path, tmp_path / "out.pem", candidates=[tmp_path / "none"])
    assert info.value.hint and "ca-certificates" in info.value.hint
    assert not (tmp_path / "out.pem").exists()


def test_missing_or_bad_ca(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no CA certificate"):
        write_combined_bundle(tmp_path / "nope.pem", tmp_path / "out.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("garbage")
    with pytest.raises(BundleError, match="not a readable PEM"):
        write_combined_bundle(bad, tmp_path / "out.pem")
