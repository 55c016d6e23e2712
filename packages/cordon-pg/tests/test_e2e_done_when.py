"""The issue's "done when": ``psql "host=127.0.0.1 port=… user=… dbname=…"`` works against a SCRAM-protected
PostgreSQL while the password lives only in the secret store (a real Secret Service: gnome-keyring on a
private D-Bus), nowhere in cordon.toml, the proxy's environment, a file, the client's output or the log."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from cordon_testing.config import SecretService, secret_service_missing
from cordon_testing.postgres import ListenerSpec, PostgresServer, free_port, write_listener_config
from cordon_testing.proxy import ProxyProcess

pytestmark = [pytest.mark.e2e, pytest.mark.keyring]


@pytest.mark.skipif(bool(secret_service_missing()), reason=f"no Secret Service here: {secret_service_missing()} "
                    "missing (apt-get install gnome-keyring dbus)")
def test_psql_with_the_password_only_in_the_keyring(pg: PostgresServer, tmp_path: Path) -> None:
    password = pg.passwords["scram_user"]
    keyring = SecretService(tmp_path / "keyring")
    try:
        keyring.set(password, "cordon", "prod-db")
        spec = ListenerSpec("prod-db", free_port(), f"localhost:{pg.port}", "scram_user",
                            {"source": "keyring", "account": "prod-db"})
        listen = free_port()
        (tmp_path / "scope").mkdir()
        config = write_listener_config(tmp_path / "scope", listen, [spec], upstream_ca_file=pg.ca_pem)
        env = dict(os.environ, **keyring.client_env())
        assert password not in "".join(env.values())
        with ProxyProcess(config, listen, env=env) as proxy:
            result = subprocess.run(
                ["psql", "-X", "-At", f"host=127.0.0.1 port={spec.port} user=scram_user dbname=app",
                 "-c", "select current_user, (select ssl from pg_stat_ssl where pid = pg_backend_pid())"],
                capture_output=True, text=True, timeout=30,
                env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}, stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "scram_user|t"  # SCRAM over verified TLS to the server
        logs = proxy.logs()
        assert "mechanism=SCRAM-SHA-256-PLUS" in logs and "pg: session started listener=prod-db" in logs
        assert password not in result.stdout + result.stderr + logs
        for path in (tmp_path / "scope").rglob("*"):
            if path.is_file():
                assert password.encode() not in path.read_bytes(), path
    finally:
        keyring.close()
