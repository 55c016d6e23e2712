"""pytest fixtures shared by test suites: import them into a ``conftest.py`` to use them there.

``isolated_home`` and ``fake_keyring`` are autouse: every test of a suite that imports them runs with a clean
environment, a throwaway HOME and a fresh in-memory keyring, so none can touch the real user's files or keyring.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cordon_testing.config import MemoryKeyring, isolate_environ, memory_keyring


@pytest.fixture(autouse=True)
def isolated_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HOME and XDG_CONFIG_HOME inside tmp_path; no proxy/CA/keyring/D-Bus variables from the outside."""
    return isolate_environ(monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def fake_keyring() -> Iterator[MemoryKeyring]:
    """A fresh in-memory keyring for the test; the previous backend afterwards."""
    with memory_keyring() as backend:
        yield backend
