"""cordon-ca test fixtures: clean proxy/TLS environment, throwaway HOME (same as the workspace conftest)."""

from __future__ import annotations

from pathlib import Path

import pytest
from cordon_testing.config import isolate_environ


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy/CA/keyring variables from outside; HOME and XDG_CONFIG_HOME inside tmp_path."""
    return isolate_environ(monkeypatch, tmp_path)
