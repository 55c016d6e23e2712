"""cordon-doctor test fixtures: a clean proxy/TLS environment and a throwaway HOME for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

_STRIPPED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "GIT_SSL_CAINFO", "CODEX_HOME", "PYTHON_KEYRING_BACKEND",
    "NO_COLOR",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Strip proxy/CA variables and point HOME and XDG_CONFIG_HOME into tmp_path; returns the fake HOME."""
    for name in _STRIPPED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_environ: Path):
    """A project scope set up like `cordon setup` does (CA, cordon.toml, bundle, tokens); cwd is the project."""
    import os

    from cordon_config.scope import resolve_scope
    from cordon_setup.base import ensure_base_setup

    proj = tmp_path / "proj"
    proj.mkdir()
    monkeypatch.chdir(proj)
    paths = resolve_scope(None, None, env=os.environ, cwd=proj)
    ensure_base_setup(paths, progress=lambda line: None)
    # The bundle check compares with the system store's mtime; pin it so a store updated meanwhile
    # (update-ca-certificates on this machine) cannot turn a fresh bundle into a warning mid-test.
    import cordon_ca

    system = tmp_path / "system-store.pem"
    system.write_bytes(b"")
    os.utime(system, (0, 0))
    monkeypatch.setattr(cordon_ca, "find_system_bundle", lambda candidates=None: system)
    return paths


def add_route(paths, body: str) -> None:
    """Append a [[routes]] table to the project's cordon.toml."""
    with open(paths.config_path, "a") as handle:
        handle.write("\n" + body)


@pytest.fixture
def route():
    return add_route
