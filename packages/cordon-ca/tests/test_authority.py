"""CA creation, profile, file permissions, locking and secure loading."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from cordon_ca import (
    CAInvalid,
    CAKeyInsecure,
    CANotFound,
    CertificateAuthority,
    load_or_create_ca,
    regenerate_ca,
)
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec


def paths(tmp_path: Path) -> tuple[Path, Path]:
    certs = tmp_path / "state" / "certs"
    return certs / "ca-cert.pem", certs / "ca-key.pem"


def test_ca_profile(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    ca = load_or_create_ca(cert_path, key_path, namespace="proj-1234abcd")
    cert = ca.cert
    assert ca.common_name == "cordon local CA proj-1234abcd"
    assert isinstance(ca.key, ec.EllipticCurvePrivateKey) and ca.key.curve.name == "secp256r1"
    assert ca.key_type == "ECDSA P-256"
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert bc.critical and bc.value.ca and bc.value.path_length == 0
    ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert 3650 <= lifetime.days <= 3651
    assert ca.permitted_hosts is None
    assert len(ca.fingerprint_sha256.split(":")) == 32


def test_files_and_modes(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    load_or_create_ca(cert_path, key_path, namespace="n")
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cert_path.stat().st_mode) == 0o644
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    leftovers = [p.name for p in key_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_idempotent_load(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    first = load_or_create_ca(cert_path, key_path, namespace="n")
    second = load_or_create_ca(cert_path, key_path, namespace="other")
    assert first.fingerprint_sha256 == second.fingerprint_sha256
    third = CertificateAuthority.load(cert_path, key_path)
    assert third.fingerprint_sha256 == first.fingerprint_sha256


def _run_py(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_umask_000_still_yields_private_key(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    result = _run_py(
        """
        import os, sys
        os.umask(0)
        from cordon_ca import load_or_create_ca
        load_or_create_ca(sys.argv[1], sys.argv[2], namespace="u")
        """,
        str(cert_path),
        str(key_path),
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "state").stat().st_mode) == 0o700
    CertificateAuthority.load(cert_path, key_path)


def test_concurrent_processes_end_with_one_ca(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    go = tmp_path / "go"
    code = """
        import os, sys, time
        from cordon_ca import load_or_create_ca
        deadline = time.monotonic() + 20
        while not os.path.exists(sys.argv[3]) and time.monotonic() < deadline:
            time.sleep(0.001)
        ca = load_or_create_ca(sys.argv[1], sys.argv[2], namespace="race")
        print(ca.fingerprint_sha256)
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(cert_path), str(key_path), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    go.touch()
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        outputs.append(out.strip())
    final = CertificateAuthority.load(cert_path, key_path)
    assert set(outputs) == {final.fingerprint_sha256}


def test_missing_files(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    with pytest.raises(CANotFound) as info:
        CertificateAuthority.load(cert_path, key_path)
    assert "cordon ca generate" in (info.value.hint or "")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660, 0o610])
def test_refuses_group_or_world_accessible_key(tmp_path: Path, mode: int) -> None:
    cert_path, key_path = paths(tmp_path)
    load_or_create_ca(cert_path, key_path, namespace="n")
    os.chmod(key_path, mode)
    with pytest.raises(CAKeyInsecure) as info:
        CertificateAuthority.load(cert_path, key_path)
    assert f"chmod 600 {key_path}" in (info.value.hint or "")
    assert f"{mode:04o}" in str(info.value)
    with pytest.raises(CAKeyInsecure):
        load_or_create_ca(cert_path, key_path, namespace="n")


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_refuses_key_owned_by_someone_else(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    load_or_create_ca(cert_path, key_path, namespace="n")
    os.chown(key_path, 65534, 65534)
    with pytest.raises(CAKeyInsecure) as info:
        CertificateAuthority.load(cert_path, key_path)
    assert "owned by uid 65534" in str(info.value)
    assert f"chmod 600 {key_path}" in (info.value.hint or "")


def test_refuses_symlinked_key(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    load_or_create_ca(cert_path, key_path, namespace="n")
    real = key_path.with_name("real-key.pem")
    key_path.rename(real)
    key_path.symlink_to(real)
    with pytest.raises(CAKeyInsecure, match="symlink"):
        CertificateAuthority.load(cert_path, key_path)


def test_refuses_mismatched_key_and_non_ca(tmp_path: Path) -> None:
    a_cert, a_key = paths(tmp_path / "a")
    b_cert, b_key = paths(tmp_path / "b")
    load_or_create_ca(a_cert, a_key, namespace="a")
    load_or_create_ca(b_cert, b_key, namespace="b")
    with pytest.raises(CAInvalid, match="does not belong"):
        CertificateAuthority.load(a_cert, b_key)
    a_cert.write_text("not a certificate\n")
    with pytest.raises(CAInvalid, match="not a PEM certificate"):
        CertificateAuthority.load(a_cert, a_key)


def test_refuses_half_a_ca(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    load_or_create_ca(cert_path, key_path, namespace="n")
    cert_path.unlink()
    with pytest.raises(CAInvalid, match="refusing to overwrite half a CA"):
        load_or_create_ca(cert_path, key_path, namespace="n")


def test_dangling_symlink_at_key_path_is_replaced_not_followed(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    key_path.parent.mkdir(parents=True, mode=0o700)
    victim = tmp_path / "victim-key.pem"
    key_path.symlink_to(victim)
    load_or_create_ca(cert_path, key_path, namespace="n")
    assert not victim.exists()
    assert not key_path.is_symlink() and stat.S_ISREG(key_path.lstat().st_mode)
    CertificateAuthority.load(cert_path, key_path)


def test_regenerate_destroys_the_old_key(tmp_path: Path) -> None:
    cert_path, key_path = paths(tmp_path)
    old = load_or_create_ca(cert_path, key_path, namespace="n")
    old_pem = key_path.read_bytes()
    elsewhere = tmp_path / "hard-link-to-old-key"
    os.link(key_path, elsewhere)  # e.g. a copy a backup tool made by hard link: the same bytes on disk
    key_path.with_name("ca-key.pem.bak").write_bytes(old_pem)  # as cordon 0.1 left one
    new = regenerate_ca(cert_path, key_path, namespace="n")
    assert new.fingerprint_sha256 != old.fingerprint_sha256
    assert sorted(p.name for p in key_path.parent.iterdir() if not p.name.startswith(".")) == [
        "ca-cert.pem", "ca-key.pem"]  # no .bak of either
    assert elsewhere.read_bytes() == b""  # the old key's bytes were overwritten, not just unlinked
    assert old_pem not in key_path.read_bytes()
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


