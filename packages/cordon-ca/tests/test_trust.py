"""OS trust store: logic with injected paths and fake tools (real subprocesses), and the real Debian path
when asked to (``CORDON_TEST_REAL_TRUST_STORE=1``), running as root with update-ca-certificates installed."""

from __future__ import annotations

import os
import shutil
import stat
import uuid
from pathlib import Path

import pytest
from cordon_ca import TrustError, load_or_create_ca
from cordon_ca import cli as cli_mod
from cordon_ca.trust import TrustStore, detect_trust_store, install_ca, remove_ca
from cryptography import x509
from cryptography.hazmat.primitives import hashes


@pytest.fixture
def ca_cert(tmp_path: Path) -> Path:
    load_or_create_ca(tmp_path / "certs/ca-cert.pem", tmp_path / "certs/ca-key.pem", namespace="trust-test")
    return tmp_path / "certs/ca-cert.pem"


def fake_tool(tmp_path: Path, name: str, *, exit_code: int = 0, stderr: str = "") -> tuple[Path, Path]:
    """A real executable that records its argv (one line per call) and exits with ``exit_code``."""
    log = tmp_path / f"{name}.log"
    tool = tmp_path / "bin" / name
    tool.parent.mkdir(exist_ok=True)
    tool.write_text(f'#!/bin/sh\necho "$@" >> {log}\necho "{stderr}" >&2\nexit {exit_code}\n')
    tool.chmod(0o755)
    return tool, log


def test_debian_without_root_prints_exact_commands(tmp_path: Path, ca_cert: Path) -> None:
    tool, log = fake_tool(tmp_path, "update-ca-certificates")
    store = TrustStore("debian", str(tool), anchor_dir=tmp_path / "anchors", euid=1000)
    with pytest.raises(TrustError) as info:
        install_ca(store, ca_cert, "proj-1")
    dest = tmp_path / "anchors/cordon-proj-1.crt"
    assert info.value.commands == [f"sudo install -D -m 0644 {ca_cert} {dest}", "sudo update-ca-certificates"]
    assert "needs root" in str(info.value)
    assert f"sudo install -D -m 0644 {ca_cert} {dest}" in (info.value.hint or "")
    assert not dest.exists() and not log.exists()


def test_debian_as_root_installs_and_removes(tmp_path: Path, ca_cert: Path) -> None:
    tool, log = fake_tool(tmp_path, "update-ca-certificates")
    store = TrustStore("debian", str(tool), anchor_dir=tmp_path / "anchors", euid=0)
    where = install_ca(store, ca_cert, "my proj")
    dest = tmp_path / "anchors/cordon-my_proj.crt"
    assert where == str(dest)
    assert x509.load_pem_x509_certificate(dest.read_bytes()) == x509.load_pem_x509_certificate(ca_cert.read_bytes())
    assert stat.S_IMODE(dest.stat().st_mode) == 0o644
    assert log.read_text().splitlines() == [""]
    assert remove_ca(store, ca_cert, "my proj") is True
    assert not dest.exists()
    assert log.read_text().splitlines() == ["", "--fresh"]
    assert remove_ca(store, ca_cert, "my proj") is False


def test_untrust_without_root_prints_commands(tmp_path: Path, ca_cert: Path) -> None:
    tool, _ = fake_tool(tmp_path, "update-ca-certificates")
    anchors = tmp_path / "anchors"
    install_ca(TrustStore("debian", str(tool), anchor_dir=anchors, euid=0), ca_cert, "p")
    with pytest.raises(TrustError) as info:
        remove_ca(TrustStore("debian", str(tool), anchor_dir=anchors, euid=501), ca_cert, "p")
    assert info.value.commands == [f"sudo rm -f {anchors / 'cordon-p.crt'}", "sudo update-ca-certificates --fresh"]


def test_fedora(tmp_path: Path, ca_cert: Path) -> None:
    tool, log = fake_tool(tmp_path, "update-ca-trust")
    store = TrustStore("fedora", str(tool), anchor_dir=tmp_path / "anchors", euid=0)
    assert install_ca(store, ca_cert, "p").endswith("anchors/cordon-p.pem")
    assert remove_ca(store, ca_cert, "p") is True
    assert log.read_text().splitlines() == ["extract", "extract"]
    with pytest.raises(TrustError) as info:
        install_ca(TrustStore("fedora", str(tool), anchor_dir=tmp_path / "anchors", euid=7), ca_cert, "p")
    assert info.value.commands[-1] == "sudo update-ca-trust extract"


def test_macos_login_keychain(tmp_path: Path, ca_cert: Path) -> None:
    tool, log = fake_tool(tmp_path, "security")
    keychain = tmp_path / "Library/Keychains/login.keychain-db"
    store = TrustStore("macos", str(tool), keychain=keychain, euid=501)  # no root needed
    assert install_ca(store, ca_cert, "p") == str(keychain)
    sha1 = x509.load_pem_x509_certificate(ca_cert.read_bytes()).fingerprint(hashes.SHA1()).hex().upper()
    assert remove_ca(store, ca_cert, "p") is True
    assert log.read_text().splitlines() == [
        f"add-trusted-cert -r trustRoot -k {keychain} {ca_cert.absolute()}",
        f"remove-trusted-cert {ca_cert.absolute()}",
        f"delete-certificate -Z {sha1} {keychain}",
    ]


def test_tool_failure_is_one_clear_error(tmp_path: Path, ca_cert: Path) -> None:
    tool, _ = fake_tool(tmp_path, "update-ca-certificates", exit_code=3, stderr="disk full")
    store = TrustStore("debian", str(tool), anchor_dir=tmp_path / "anchors", euid=0)
    with pytest.raises(TrustError, match="update-ca-certificates exited 3: disk full") as info:
        install_ca(store, ca_cert, "p")
    assert info.value.hint and "sudo update-ca-certificates" in info.value.hint


def test_unwritable_anchor_dir_is_one_clear_error(tmp_path: Path, ca_cert: Path) -> None:
    tool, log = fake_tool(tmp_path, "update-ca-certificates")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = TrustStore("debian", str(tool), anchor_dir=blocker / "anchors", euid=0)
    with pytest.raises(TrustError, match="cannot write") as info:
        install_ca(store, ca_cert, "p")
    assert "sudo update-ca-certificates" in (info.value.hint or "")
    assert not log.exists()


def test_detect(tmp_path: Path) -> None:
    tools = {"update-ca-certificates": "/usr/sbin/update-ca-certificates", "security": "/usr/bin/security"}
    store = detect_trust_store(platform="linux", find=tools.get)
    assert store is not None and store.kind == "debian" and str(store.anchor_dir) == "/usr/local/share/ca-certificates"
    store = detect_trust_store(platform="linux", find={"update-ca-trust": "/usr/bin/update-ca-trust"}.get)
    assert store is not None and store.kind == "fedora"
    assert str(store.anchor_dir) == "/etc/pki/ca-trust/source/anchors"
    store = detect_trust_store(platform="darwin", find=tools.get, home=tmp_path)
    assert store is not None and store.kind == "macos"
    assert store.keychain == tmp_path / "Library/Keychains/login.keychain-db"
    assert detect_trust_store(platform="linux", find=lambda _name: None) is None


def _project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    return proj


def test_cli_trust_without_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _project(tmp_path, monkeypatch)
    tool, _ = fake_tool(tmp_path, "update-ca-certificates")
    store = TrustStore("debian", str(tool), anchor_dir=tmp_path / "anchors", euid=1000)
    monkeypatch.setattr(cli_mod, "_detect_store", lambda: store)
    assert cli_mod.main(["generate"]) == 0
    capsys.readouterr()
    assert cli_mod.trust_main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cordon: changing the system trust store needs root\nhint: run these commands:\n")
    assert "  sudo update-ca-certificates\n" in err
    assert cli_mod.trust_main(["--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sudo install -D -m 0644" in out and "keytool -importcert" in out


def test_cli_no_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _project(tmp_path, monkeypatch)
    monkeypatch.setattr(cli_mod, "_detect_store", lambda: None)
    cli_mod.main(["generate"])
    capsys.readouterr()
    assert cli_mod.trust_main([]) == 1
    assert capsys.readouterr().err.startswith("cordon: no supported trust store tool found")


def test_cli_trust_missing_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    _project(tmp_path, monkeypatch)
    tool, _ = fake_tool(tmp_path, "update-ca-certificates")
    monkeypatch.setattr(cli_mod, "_detect_store", lambda: TrustStore("debian", str(tool), anchor_dir=tmp_path, euid=0))
    assert cli_mod.trust_main([]) == 1
    err = capsys.readouterr().err
    assert err.startswith("cordon: no CA certificate at ") and "cordon ca generate" in err


SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def _pem_body(pem: bytes) -> bytes:
    return b"".join(line for line in pem.splitlines() if not line.startswith(b"-----"))


#: opt-in: the real trust-store test adds a CA to this machine's trust store (and removes it again)
REAL_TRUST_STORE = "CORDON_TEST_REAL_TRUST_STORE"


@pytest.mark.skipif(os.environ.get(REAL_TRUST_STORE) != "1",
                    reason=f"edits this machine's trust store: opt in with {REAL_TRUST_STORE}=1 (as root, on a "
                    "throwaway machine)")
@pytest.mark.skipif(os.geteuid() != 0, reason="the real Debian trust test needs root")
@pytest.mark.skipif(shutil.which("update-ca-certificates") is None and not Path("/usr/sbin/update-ca-certificates").exists(),
                    reason="update-ca-certificates is not installed")
@pytest.mark.timeout(300)
def test_real_debian_trust_and_untrust(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    config = tmp_path / f"cordon-trust-{uuid.uuid4().hex[:8]}" / "cordon.toml"
    config.parent.mkdir()
    assert cli_mod.main(["generate", "-c", str(config)]) == 0
    cert_path = Path(capsys.readouterr().out.split("CA created: ", 1)[1].splitlines()[0])
    body = _pem_body(cert_path.read_bytes())
    namespace = cert_path.parent.parent.name
    dest = Path("/usr/local/share/ca-certificates") / f"cordon-{namespace}.crt"
    try:
        assert cli_mod.trust_main(["-c", str(config)]) == 0, capsys.readouterr().err
        assert dest.exists()
        assert body in _pem_body(SYSTEM_BUNDLE.read_bytes())
        assert cli_mod.untrust_main(["-c", str(config)]) == 0, capsys.readouterr().err
        assert not dest.exists()
        assert body not in _pem_body(SYSTEM_BUNDLE.read_bytes())
    finally:
        if dest.exists():
            dest.unlink()
            store = detect_trust_store()
            assert store is not None
            store.run([store.tool, "--fresh"])
