"""cordon-proxy tests: a clean proxy/TLS environment and a throwaway HOME for every test."""

from __future__ import annotations

from pathlib import Path

import pytest

_STRIPPED = (
    "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy",
    "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NODE_EXTRA_CA_CERTS",
    "NODE_USE_ENV_PROXY", "PYTHON_KEYRING_BACKEND", "CORDON_TEST_RESOLVE", "CORDON_TEST_ALLOW_LOOPBACK",
)


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for name in _STRIPPED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home
