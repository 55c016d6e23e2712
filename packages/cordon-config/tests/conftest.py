"""cordon-config test fixtures: a clean environment, a throwaway HOME and an in-memory keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_config.testing import MemoryKeyring, isolate_environ, memory_keyring


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME and XDG_CONFIG_HOME inside tmp_path; no proxy/CA/keyring/D-Bus variables from the outside."""
    return isolate_environ(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def fake_keyring() -> Iterator[MemoryKeyring]:
    """Every test gets a fresh in-memory keyring, so none can touch the real user's keyring."""
    with memory_keyring() as backend:
        yield backend
