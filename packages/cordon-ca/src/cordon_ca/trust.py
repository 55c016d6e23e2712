"""Adding the CA to (and removing it from) the OS trust store: Debian/Ubuntu, Fedora/RHEL, macOS; Java hints.

Every path, command and the effective uid are injectable (:class:`TrustStore`), so the logic is tested
without root; :func:`detect_trust_store` fills them in for the running system.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cordon_config.files import atomic_write
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from cordon_ca.errors import TrustError

DEBIAN_DIR = Path("/usr/local/share/ca-certificates")
FEDORA_DIR = Path("/etc/pki/ca-trust/source/anchors")
Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, timeout=300, check=False)


def which(name: str) -> str | None:
    """``shutil.which`` that also looks in the sbin directories non-root PATHs often lack."""
    found = shutil.which(name)
    if found:
        return found
    return shutil.which(name, path=os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin")))


@dataclass(frozen=True)
class TrustStore:
    """One OS trust store and how to change it."""

    kind: Literal["debian", "fedora", "macos"]
    tool: str  # update-ca-certificates / update-ca-trust / security (absolute path or name)
    anchor_dir: Path | None = None  # debian/fedora
    keychain: Path | None = None  # macos
    euid: int = field(default_factory=os.geteuid)
    run: Runner = _run

    @property
    def needs_root(self) -> bool:
        """Linux stores need root; the macOS login keychain does not."""
        return self.kind != "macos"


def detect_trust_store(
    *,
    platform: str | None = None,
    find: Callable[[str], str | None] = which,
    home: Path | None = None,
) -> TrustStore | None:
    """The trust store of this system, or None when no supported tool is installed."""
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        tool = find("security")
        if tool is None:
            return None
        keychain = (home or Path.home()) / "Library" / "Keychains" / "login.keychain-db"
        return TrustStore("macos", tool, keychain=keychain)
    tool = find("update-ca-certificates")
    if tool is not None:
        return TrustStore("debian", tool, anchor_dir=DEBIAN_DIR)
    tool = find("update-ca-trust")
    if tool is not None:
        return TrustStore("fedora", tool, anchor_dir=FEDORA_DIR)
    return None


def anchor_name(namespace: str, kind: str) -> str:
    """File name of the CA in the anchor dir (``.crt`` is required by update-ca-certificates)."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", namespace) or "default"
    return f"cordon-{safe}.crt" if kind == "debian" else f"cordon-{safe}.pem"


def _q(value: str | Path) -> str:
    return shlex.quote(str(value))


def _load_cert(ca_cert_path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(Path(ca_cert_path).read_bytes())
    except FileNotFoundError:
        raise TrustError(f"no CA certificate at {ca_cert_path}", "create one with: cordon ca generate") from None
    except (OSError, ValueError):
        raise TrustError(f"{ca_cert_path} is not a readable PEM certificate") from None


def trust_commands(store: TrustStore, ca_cert_path: Path, namespace: str) -> list[str]:
    """The shell commands that add the CA (what to run by hand, with sudo on Linux)."""
    if store.kind == "macos":
        return [f"security add-trusted-cert -r trustRoot -k {_q(store.keychain or '')} {_q(ca_cert_path)}"]
    assert store.anchor_dir is not None
    dest = store.anchor_dir / anchor_name(namespace, store.kind)
    update = "update-ca-certificates" if store.kind == "debian" else "update-ca-trust extract"
    return [f"sudo install -D -m 0644 {_q(ca_cert_path)} {_q(dest)}", f"sudo {update}"]


def untrust_commands(store: TrustStore, ca_cert_path: Path | None, namespace: str) -> list[str]:
    """The shell commands that remove the CA."""
    if store.kind == "macos":
        keychain = _q(store.keychain or "")
        name = _q(f"cordon local CA {namespace}")
        commands = [f"security remove-trusted-cert {_q(ca_cert_path)}"] if ca_cert_path else []
        return [*commands, f"security delete-certificate -c {name} {keychain}"]
    assert store.anchor_dir is not None
    dest = store.anchor_dir / anchor_name(namespace, store.kind)
    update = "update-ca-certificates --fresh" if store.kind == "debian" else "update-ca-trust extract"
    return [f"sudo rm -f {_q(dest)}", f"sudo {update}"]


def java_commands(ca_cert_path: Path, namespace: str) -> tuple[str, str]:
    """``keytool`` commands to add/remove the CA for Java (its own cacerts store; not done automatically)."""
    alias = _q(f"cordon-{namespace}")
    return (
        f"sudo keytool -importcert -noprompt -trustcacerts -cacerts -storepass changeit -alias {alias} "
        f"-file {_q(ca_cert_path)}",
        f"sudo keytool -delete -cacerts -storepass changeit -alias {alias}",
    )


def _check(store: TrustStore, argv: Sequence[str], commands: list[str], what: str) -> None:
    try:
        result = store.run(argv)
    except OSError as exc:
        raise TrustError(f"{what}: cannot run {argv[0]}: {exc.strerror}", _by_hand(commands), commands=commands) from None
    if result.returncode != 0:
        detail = (result.stderr or result.stdout or "").strip().splitlines()
        tail = f": {detail[-1]}" if detail else ""
        raise TrustError(
            f"{what}: {Path(argv[0]).name} exited {result.returncode}{tail}", _by_hand(commands), commands=commands
        )


def _by_hand(commands: list[str]) -> str:
    return "run these commands:\n  " + "\n  ".join(commands)


def _need_root(store: TrustStore, commands: list[str], action: str) -> None:
    if store.needs_root and store.euid != 0:
        raise TrustError(
            f"{action} the system trust store needs root",
            _by_hand(commands),
            commands=commands,
        )


def install_ca(store: TrustStore, ca_cert_path: Path, namespace: str) -> str:
    """Add the CA to ``store``; returns where it went. Raises TrustError (with .commands) without privilege."""
    ca_cert_path = Path(ca_cert_path).absolute()
    cert = _load_cert(ca_cert_path)
    commands = trust_commands(store, ca_cert_path, namespace)
    _need_root(store, commands, "changing")
    if store.kind == "macos":
        argv = [store.tool, "add-trusted-cert", "-r", "trustRoot", "-k", str(store.keychain), str(ca_cert_path)]
        _check(store, argv, commands, "adding the CA to the login keychain")
        return str(store.keychain)
    assert store.anchor_dir is not None
    dest = store.anchor_dir / anchor_name(namespace, store.kind)
    try:
        store.anchor_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        atomic_write(dest, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    except OSError as exc:
        raise TrustError(f"cannot write {dest}: {exc.strerror}", _by_hand(commands), commands=commands) from None
    argv = [store.tool] if store.kind == "debian" else [store.tool, "extract"]
    _check(store, argv, commands, "updating the system trust store")
    return str(dest)


def remove_ca(store: TrustStore, ca_cert_path: Path | None, namespace: str) -> bool:
    """Remove the CA from ``store``; False when it was not there (nothing changed)."""
    ca_path = Path(ca_cert_path).absolute() if ca_cert_path and Path(ca_cert_path).exists() else None
    commands = untrust_commands(store, ca_path, namespace)
    if store.kind == "macos":
        keychain = str(store.keychain)
        if ca_path is not None:
            sha1 = _load_cert(ca_path).fingerprint(hashes.SHA1()).hex().upper()  # the keychain names certs by SHA-1
            store.run([store.tool, "remove-trusted-cert", str(ca_path)])
            result = store.run([store.tool, "delete-certificate", "-Z", sha1, keychain])
        else:
            result = store.run(
                [store.tool, "delete-certificate", "-c", f"cordon local CA {namespace}", keychain]
            )
        return result.returncode == 0
    assert store.anchor_dir is not None
    dest = store.anchor_dir / anchor_name(namespace, store.kind)
    if not dest.exists():
        return False
    _need_root(store, commands, "changing")
    try:
        dest.unlink()
    except OSError as exc:
        raise TrustError(f"cannot remove {dest}: {exc.strerror}", _by_hand(commands), commands=commands) from None
    argv = [store.tool, "--fresh"] if store.kind == "debian" else [store.tool, "extract"]
    _check(store, argv, commands, "updating the system trust store")
    return True
