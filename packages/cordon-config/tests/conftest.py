"""cordon-config test fixtures: a clean environment, a throwaway HOME and an in-memory keyring."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_config.testing import MemoryKeyring, memory_keyring

_STRIPPED = ("PYTHON_KEYRING_BACKEND", "CORDON_TEST_KEYRING_FILE", "DBUS_SESSION_BUS_ADDRESS")


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME and XDG_CONFIG_HOME inside tmp_path; no keyring/D-Bus variables from the outside."""
    for name in _STRIPPED:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    return home


@pytest.fixture(autouse=True)
def fake_keyring() -> Iterator[MemoryKeyring]:
    """Every test gets a fresh in-memory keyring, so none can touch the real user's keyring."""
    with memory_keyring() as backend:
        yield backend
