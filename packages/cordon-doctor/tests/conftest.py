"""cordon-doctor test fixtures: a clean proxy/TLS environment and a throwaway HOME for every test."""

from __future__ import annotations

from pathlib import Path

import pytest
from cordon_testing.config import isolate_environ


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy/CA/keyring variables from outside; HOME and XDG_CONFIG_HOME inside tmp_path."""
    return isolate_environ(monkeypatch, tmp_path)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: Path):
    """A project scope set up like `cordon setup` does (CA, cordon.toml, bundle, tokens); cwd is the project."""
    import os

    from cordon_config.scope import resolve_scope
    from cordon_setup.base import ensure_base_setup
    from cordon_testing.proxy import free_port

    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    paths = resolve_scope(None, None, env=os.environ, cwd=proj)
    # a port the OS just gave out, not the first free one from 6790: a proxy or test elsewhere on the machine
    # may take 6790 between setup and the doctor's port check
    ensure_base_setup(paths, port=free_port(), progress=lambda line: None)
    # The bundle check compares with the system store's mtime; pin it so a store updated meanwhile
    # (update-ca-certificates on this machine) cannot turn a fresh bundle into a warning mid-test.
    import cordon_ca

    system = tmp_path / "system-store.pem"
    system.write_bytes(b"")
    os.utime(system, (0, 0))
    monkeypatch.setattr(cordon_ca, "find_system_bundle", lambda candidates=None: system)
    return paths


def add_route(paths, body: str, *, approve: bool = True) -> None:
    """Append a [[routes]] table to the project's cordon.toml and, as its user would, approve it."""
    with open(paths.config_path, "a") as handle:
        handle.write("\n" + body)
    if approve:
        from cordon_config.approvals import approve as record
        from cordon_config.parse import load_config

        record(paths, load_config(paths.config_path))


@pytest.fixture
def route():
    return add_route
