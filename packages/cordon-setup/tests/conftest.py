"""Every cordon-setup test runs with no proxy/CA variables and a throwaway HOME and XDG_CONFIG_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

_STRIPPED = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "SSLKEYLOGFILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "NODE_USE_ENV_PROXY",
    "GIT_SSL_CAINFO",
    "CODEX_HOME",
    "PYTHON_KEYRING_BACKEND",
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
