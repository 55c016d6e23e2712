"""``cordon-pg check`` (and the findings ``cordon doctor`` shows) against a real PostgreSQL: a good upstream, one
down, one whose certificate is for another name, one over plain TCP, and a port something else holds."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from cordon_pg.cli import main
from cordon_testing.postgres import ListenerSpec, PostgresServer, free_port, write_listener_config

pytestmark = pytest.mark.e2e


def test_check_reports_each_listener(pg: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = {"source": "env", "var": "PW"}
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        held = squatter.getsockname()[1]
        specs = [
            ListenerSpec("good", free_port(), f"localhost:{pg.port}", "scram_user", secret),
            ListenerSpec("down", free_port(), f"localhost:{free_port()}", "scram_user", secret),
            ListenerSpec("other-name", free_port(), f"127.0.0.1:{pg.port}", "scram_user", secret),
            ListenerSpec("plain", held, f"localhost:{pg.port}", "scram_user", secret, upstream_tls="disable"),
        ]
        config = write_listener_config(tmp_path, free_port(), specs, upstream_ca_file=pg.ca_pem)
        code = main(["check", "--json", "--config", str(config)])
    findings = {f["check"]: f for f in json.loads(capsys.readouterr().out)}
    assert code == 1
    assert findings["listener.good.port"]["status"] == "ok"
    good = findings["listener.good.upstream"]
    assert good["status"] == "ok" and "TLS verified for localhost" in good["message"]
    assert "channel binding available" in good["message"]
    down = findings["listener.down.upstream"]
    assert down["status"] == "fail" and "unreachable" in down["message"] and down["fix"]
    other = findings["listener.other-name.upstream"]
    assert other["status"] == "fail" and "certificate is not valid for '127.0.0.1'" in other["message"]
    assert findings["listener.plain.upstream"]["status"] == "warn"
    port = findings["listener.plain.port"]
    assert port["status"] == "fail" and f"127.0.0.1:{held}" in port["message"]
    assert "cordon listener edit plain --port" in port["fix"]


def test_check_text_and_bad_input(pg: PostgresServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = ListenerSpec("good", free_port(), f"localhost:{pg.port}", "scram_user", {"source": "env", "var": "PW"})
    config = write_listener_config(tmp_path, free_port(), [spec], upstream_ca_file=pg.ca_pem)
    assert main(["check", "good", "-c", str(config)]) == 0
    out = capsys.readouterr().out
    assert "ok    listener.good.upstream: localhost:" in out
    assert main(["check", "nope", "-c", str(config)]) == 2
    assert "no listener named 'nope'" in capsys.readouterr().err
