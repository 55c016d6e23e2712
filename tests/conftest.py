"""Workspace-level fixtures: every test runs with a clean proxy/TLS environment and a throwaway HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

_ORIGINAL_ENV = dict(os.environ)

_STRIPPED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "SSLKEYLOGFILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS", "NODE_USE_ENV_PROXY", "GIT_SSL_CAINFO", "CODEX_HOME", "PYTHON_KEYRING_BACKEND",
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
def original_environ() -> dict[str, str]:
    """The environment as it was before ``clean_environ`` (for tools such as uv that must reach a registry)."""
    return dict(_ORIGINAL_ENV)
