"""A real PostgreSQL behind a real ``cordon start`` with listeners, driven by psql, psycopg and asyncpg:
every auth method over each upstream TLS mode, every client_tls mode against what clients ask for, SCRAM with
channel binding, and the canary (no password in any output or log)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cordon_testing.postgres import (
    CLIENTS,
    ListenerSpec,
    PostgresServer,
    Result,
    free_port,
    psql,
    write_listener_config,
)
from cordon_testing.proxy import ProxyProcess

pytestmark = pytest.mark.e2e

USERS = {"scram": "scram_user", "md5": "md5_user", "password": "plain_user"}
VARS = {"scram_user": "PW_SCRAM", "md5_user": "PW_MD5", "plain_user": "PW_PLAIN"}


@dataclass
class Stack:
    pg: PostgresServer
    proxy: ProxyProcess
    ports: dict[str, int]
    outputs: list[str]

    def connect(self, client: str, listener: str, user: str, sslmode: str = "prefer") -> Result:
        result = CLIENTS[client](self.ports[listener], user, sslmode=sslmode)
        self.outputs.append(result.error + repr(result.rows))
        return result


def _specs(pg: PostgresServer) -> list[ListenerSpec]:
    specs = []
    for method, user in USERS.items():
        for upstream_tls in ("verify-full", "disable"):
            specs.append(ListenerSpec(f"{method}-{upstream_tls}", free_port(), f"localhost:{pg.port}", user,
                                      {"source": "env", "var": VARS[user]}, upstream_tls=upstream_tls))
    for client_tls in ("require", "disable"):
        for upstream_tls in ("verify-full", "disable"):
            specs.append(ListenerSpec(f"client-{client_tls}-{upstream_tls}", free_port(), f"localhost:{pg.port}",
                                      "scram_user", {"source": "env", "var": "PW_SCRAM"}, client_tls=client_tls,
                                      upstream_tls=upstream_tls))
    return specs


@pytest.fixture(scope="module")
def stack(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("pg-matrix")
    specs = _specs(pg)
    listen = free_port()
    config = write_listener_config(directory, listen, specs, upstream_ca_file=pg.ca_pem)
    env = dict(os.environ, **{VARS[user]: pg.passwords[user] for user in VARS})
    with ProxyProcess(config, listen, env=env) as proxy:
        yield Stack(pg, proxy, {spec.name: spec.port for spec in specs}, [])


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("upstream_tls", ["verify-full", "disable"])
@pytest.mark.parametrize("method", list(USERS))
def test_each_auth_method_over_each_upstream_tls_mode(stack: Stack, client: str, method: str,
                                                      upstream_tls: str) -> None:
    user = USERS[method]
    result = stack.connect(client, f"{method}-{upstream_tls}", user)
    assert result.ok, result.error
    (row,) = result.rows
    assert row == (user, "t" if upstream_tls == "verify-full" else "f")  # the server sees TLS iff verify-full


# (client_tls, sslmode the client asks for) -> None when it works, else words of the error the user sees
TLS_CASES = {
    ("accept", "disable"): None,
    ("accept", "require"): None,
    ("require", "disable"): "this listener requires TLS",
    ("require", "require"): None,
    ("disable", "disable"): None,
    ("disable", "require"): "SSL",
}


@pytest.mark.parametrize("upstream_tls", ["verify-full", "disable"])
@pytest.mark.parametrize(("client_tls", "sslmode"), list(TLS_CASES))
def test_client_tls_modes_with_psql(stack: Stack, client_tls: str, sslmode: str, upstream_tls: str) -> None:
    name = f"scram-{upstream_tls}" if client_tls == "accept" else f"client-{client_tls}-{upstream_tls}"
    result = stack.connect("psql", name, "scram_user", sslmode)
    expected = TLS_CASES[(client_tls, sslmode)]
    if expected is None:
        assert result.ok, result.error
        assert result.rows[0][0] == "scram_user"
    else:
        assert not result.ok and expected in result.error


@pytest.mark.parametrize("client", ["psycopg", "asyncpg"])
def test_client_tls_require_with_drivers(stack: Stack, client: str) -> None:
    assert stack.connect(client, "client-require-verify-full", "scram_user", "require").ok
    refused = stack.connect(client, "client-require-verify-full", "scram_user", "disable")
    assert not refused.ok and "requires TLS" in refused.error


def test_scram_uses_channel_binding_over_verified_tls(stack: Stack) -> None:
    assert stack.connect("psql", "scram-verify-full", "scram_user").ok
    assert stack.connect("psql", "scram-disable", "scram_user").ok
    logs = stack.proxy.logs()
    assert "listener=scram-verify-full mechanism=SCRAM-SHA-256-PLUS" in logs
    assert "listener=scram-disable mechanism=SCRAM-SHA-256" in logs


def test_client_leg_tls_presents_cordons_certificate_for_localhost(stack: Stack, tmp_path: Path) -> None:
    ca = stack.proxy.config_path.parent / "state" / "certs" / "ca-cert.pem"
    port = stack.ports["scram-verify-full"]
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path)}
    import subprocess

    def connect(host: str, sslmode: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["psql", "-X", "-At", f"host={host} port={port} user=scram_user dbname=app sslmode={sslmode} "
             f"sslrootcert={ca}", "-c", "select 1"], capture_output=True, text=True, timeout=30, env=env)
        stack.outputs.append(result.stdout + result.stderr)
        return result

    result = connect("localhost", "verify-full")  # the name-constrained CA permits localhost for listeners
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr
    result = connect("127.0.0.1", "verify-ca")  # cordon's CA, whatever name was dialled
    assert result.returncode == 0 and result.stdout.strip() == "1", result.stderr
    refused = connect("127.0.0.1", "verify-full")  # a name-constrained CA certifies no IP address
    assert refused.returncode != 0 and 'does not match host name "127.0.0.1"' in refused.stderr


def test_the_session_is_really_relayed(stack: Stack) -> None:
    result = psql(stack.ports["md5-verify-full"], "md5_user",
                  query="create temporary table t (x int); insert into t select generate_series(1, 1000); "
                        "select count(*), sum(x) from t; select current_database(), version() like 'PostgreSQL%'")
    stack.outputs.append(result.error + repr(result.rows))
    assert result.ok, result.error
    assert result.rows[-2:] == [("1000", "500500"), ("app", "t")]


def test_canary_no_password_in_any_output_or_log(stack: Stack) -> None:
    """Everything the clients of this module saw and everything cordon logged (a session and a failure at
    least, whichever tests ran before this one)."""
    assert stack.connect("psql", "scram-verify-full", "scram_user").ok
    assert stack.connect("psql", "scram-verify-full", "postgres").error  # a failure's text counts too
    stack.proxy.stop()  # its last log lines too
    try:
        seen = "\n".join([*stack.outputs, stack.proxy.logs()])
        assert "pg: session started" in seen
        for password in stack.pg.passwords.values():
            assert password not in seen
        for path in stack.proxy.config_path.parent.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for password in stack.pg.passwords.values():
                    assert password.encode() not in data, path
    finally:
        stack.proxy.start()  # the module's proxy again for the tests that run after this one
