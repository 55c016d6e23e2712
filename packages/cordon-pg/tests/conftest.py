"""cordon-pg tests: a clean environment per test, and one real PostgreSQL server per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.config import isolate_environ
from cordon_testing.postgres import PostgresServer, missing_reason

PG_VARIABLES = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGPASSFILE", "PGDATABASE", "PGSSLMODE",
                "PGSERVICE", "PGSERVICEFILE", "PGSSLROOTCERT", "PGOPTIONS", "PGAPPNAME", "PGCHANNELBINDING")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No proxy/CA/keyring/libpq variables from outside; HOME and XDG_CONFIG_HOME inside tmp_path."""
    for name in PG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return isolate_environ(monkeypatch, tmp_path)


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresServer]:
    """A real PostgreSQL server (TLS on; scram_user, md5_user and plain_user), or a skip saying what is missing."""
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


def client_env(**extra: str) -> dict[str, str]:
    """The environment for a client subprocess: PATH and HOME only, plus ``extra``."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/"), **extra}
