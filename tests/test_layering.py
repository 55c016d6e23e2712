"""Enforce who may import whom (docs/architecture.md, STYLE.md §2.4) by reading every source file's imports."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package -> sibling cordon packages it may import
ALLOWED_SIBLINGS: dict[str, set[str]] = {
    "cordon": set(),
    "cordon_config": set(),
    "cordon_ca": {"cordon_config"},  # cli.py; the library only CA_LIBRARY_CONFIG, checked below
    "cordon_proxy": {"cordon_ca", "cordon_config"},
    "cordon_setup": {"cordon_config", "cordon_ca"},
    "cordon_doctor": {"cordon_config", "cordon_ca", "cordon_setup"},
    "cordon_pg": {"cordon_config", "cordon_ca", "cordon_proxy"},
    # test support (a dev dependency only): no product package may import it, as no other entry lists it
    "cordon_testing": {"cordon_config", "cordon_ca", "cordon_proxy", "cordon_setup", "cordon_doctor", "cordon_pg"},
}
# package -> third-party top-level modules it may import (beyond its siblings and the stdlib)
ALLOWED_THIRD_PARTY: dict[str, set[str]] = {
    "cordon": set(),
    "cordon_config": {"tomlkit", "keyring"},
    "cordon_ca": {"cryptography", "certifi"},
    "cordon_proxy": {"httptools", "uvloop", "brotli", "zstandard"},  # the last two: the compression extra
    "cordon_setup": {"tomlkit"},
    "cordon_doctor": set(),
    "cordon_pg": {"cryptography"},
    "cordon_testing": {"keyring", "trustme", "pytest", "psycopg", "asyncpg", "brotli"},
}
# the cordon-config modules the CA library (all of cordon_ca but cli.py) may import: stdlib only, the one owner of
# a decision the CA shares (host names, file writing)
CA_LIBRARY_CONFIG = {"cordon_config.hosts", "cordon_config.files"}
NETWORK_MODULES = {"socket", "ssl", "asyncio", "http"}
# the cordon-config modules allowed a socket, for 127.0.0.1 only (no traffic leaves the host): probing for a free
# port, and asking the scope's proxy on its port to prove its identity
CONFIG_SOCKET_MODULES = {"ports.py", "identity.py"}
SANS_IO_FORBIDDEN = {"asyncio", "socket", "ssl", "time", "os", "selectors", "subprocess"}
# cordon-pg's protocol logic (codec, SCRAM, the handshake state machine) is sans-IO like cordon_proxy.core
PG_SANS_IO = {"protocol.py", "scram.py", "session.py", "events.py"}


def _sources() -> list[tuple[str, Path]]:
    found = [("cordon", p) for p in (ROOT / "src" / "cordon").rglob("*.py")]
    for pkg_dir in sorted((ROOT / "packages").iterdir()):
        src = pkg_dir / "src"
        if src.is_dir():
            for module_dir in src.iterdir():
                if module_dir.is_dir():
                    found += [(module_dir.name, p) for p in module_dir.rglob("*.py")]
    return found


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


SOURCES = _sources()


def test_sources_were_found() -> None:
    packages = {pkg for pkg, _ in SOURCES}
    assert packages == set(ALLOWED_SIBLINGS)


STDLIB = sys.stdlib_module_names | {"_sha2"}  # _sha2: Python 3.12+'s name for 3.11's _sha256


@pytest.mark.parametrize(("package", "path"), SOURCES, ids=[str(p.relative_to(ROOT)) for _, p in SOURCES])
def test_imports_respect_the_layering(package: str, path: Path) -> None:
    rel = path.relative_to(ROOT).as_posix()
    for name in _imports(path):
        top = name.split(".")[0]
        if top == package or top in STDLIB or top == "__future__":
            if package == "cordon_config" and top in NETWORK_MODULES and not (
                top == "socket" and path.name in CONFIG_SOCKET_MODULES
            ):
                pytest.fail(f"{rel}: cordon-config never touches the network (imports {name})")
            if "/core/" in rel and package == "cordon_proxy" and top in SANS_IO_FORBIDDEN:
                pytest.fail(f"{rel}: cordon_proxy.core is sans-IO and may not import {name}")
            if package == "cordon_pg" and path.name in PG_SANS_IO and top in SANS_IO_FORBIDDEN:
                pytest.fail(f"{rel}: cordon-pg's protocol modules are sans-IO and may not import {name}")
            continue
        if top.startswith("cordon"):
            assert top in ALLOWED_SIBLINGS[package], f"{rel}: {package} may not import {top}"
            if package == "cordon_ca" and path.name != "cli.py":
                assert name in CA_LIBRARY_CONFIG, f"{rel}: the CA library imports only {sorted(CA_LIBRARY_CONFIG)}"
            if package == "cordon_pg" and path.name in PG_SANS_IO:
                assert top != "cordon_proxy", f"{rel}: cordon-pg's sans-IO modules import no proxy code"
            continue
        assert top in ALLOWED_THIRD_PARTY[package], f"{rel}: {package} may not import third-party {top}"


def test_cordon_proxy_finds_listener_runners_only_through_entry_points() -> None:
    """cordon start serves cordon-pg's listeners without importing cordon-pg (entry-point group cordon.listeners)."""
    for package, path in SOURCES:
        if package == "cordon_proxy":
            assert not any(name.split(".")[0] == "cordon_pg" for name in _imports(path)), path


@pytest.mark.parametrize("module", sorted(CA_LIBRARY_CONFIG))
def test_what_the_ca_library_imports_from_cordon_config_is_stdlib_only(module: str) -> None:
    """cordon-ca stays light: the cordon-config modules its library uses import nothing beyond the stdlib."""
    path = ROOT / "packages" / "cordon-config" / "src" / (module.replace(".", "/") + ".py")
    outside = {name for name in _imports(path) if name.split(".")[0] not in STDLIB | {"__future__"}}
    assert not outside, f"{module} imports {sorted(outside)}"
