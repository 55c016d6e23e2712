"""Workspace-level fixtures: every test runs with a clean proxy/TLS environment and a throwaway HOME."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cordon_testing.config import isolate_environ

_ORIGINAL_ENV = dict(os.environ)

@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy/CA/keyring variables from outside; HOME and XDG_CONFIG_HOME inside tmp_path; returns HOME."""
    return isolate_environ(monkeypatch, tmp_path)


@pytest.fixture
def original_environ() -> dict[str, str]:
    """The environment as it was before ``clean_environ`` (for tools such as uv that must reach a registry)."""
    return dict(_ORIGINAL_ENV)
