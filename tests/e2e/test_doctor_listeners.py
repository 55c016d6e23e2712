"""``cordon doctor`` on a scope with PostgreSQL listeners (a real server): each listener's secret, port and
upstream certificate, reported through cordon-pg's ``cordon.doctor_checks`` entry point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.config import approve_config
from cordon_testing.doctor import doctor
from cordon_testing.postgres import (
    ListenerSpec,
    PostgresServer,
    free_port,
    missing_reason,
    write_listener_config,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    reason = missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with PostgresServer() as server:
        yield server


def test_doctor_checks_each_listener(pg: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PG_GOOD", pg.passwords["scram_user"])
    specs = [
        ListenerSpec("good", free_port(), f"localhost:{pg.port}", "scram_user", {"source": "env", "var": "PG_GOOD"}),
        ListenerSpec("nosecret", free_port(), f"localhost:{pg.port}", "scram_user",
                     {"source": "env", "var": "PG_NOT_SET"}),
        ListenerSpec("wrongname", free_port(), f"127.0.0.1:{pg.port}", "scram_user",
                     {"source": "env", "var": "PG_GOOD"}),
    ]
    config = write_listener_config(tmp_path, free_port(), specs, upstream_ca_file=pg.ca_pem)
    approve_config(config, cwd=tmp_path)  # the user approved these listeners
    code, out = doctor(capsys, "--json", "--config", str(config))
    assert code == 1
    findings = {f["check"]: f for f in json.loads(out)["checks"]}
    assert findings["listener.good.secret"]["status"] == "ok"
    assert findings["listener.good.port"]["status"] == "ok"
    assert findings["listener.good.upstream"]["status"] == "ok"
    missing = findings["listener.nosecret.secret"]
    assert missing["status"] == "fail" and "PG_NOT_SET is not set" in missing["message"]
    assert "export PG_NOT_SET=" in missing["fix"]
    wrong = findings["listener.wrongname.upstream"]
    assert wrong["status"] == "fail" and "certificate verify failed" in wrong["message"]
    assert pg.passwords["scram_user"] not in out
