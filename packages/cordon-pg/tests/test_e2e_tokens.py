"""Proxy tokens as database passwords (tokens.toml present): cleartext inside TLS, SCRAM-SHA-256 without TLS,
a wrong or missing token refused before anything reaches the server, and a rotated token ends its sessions."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cordon_config.tokens import TokenStore
from cordon_testing.postgres import (
    CLIENTS,
    ListenerSpec,
    PostgresServer,
    free_port,
    psycopg_connect,
    write_listener_config,
)
from cordon_testing.proxy import ProxyProcess, tokens_for

pytestmark = pytest.mark.e2e


@dataclass
class Stack:
    pg: PostgresServer
    proxy: ProxyProcess
    port: int
    store: TokenStore
    token: str
    outputs: list[str]


@pytest.fixture(scope="module")
def stack(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("pg-tokens")
    listen = free_port()
    spec = ListenerSpec("prod-db", free_port(), f"localhost:{pg.port}", "scram_user", {"source": "env", "var": "PW"})
    config = write_listener_config(directory, listen, [spec], upstream_ca_file=pg.ca_pem)
    tokens_path, _ = tokens_for(config)
    tokens_path.parent.mkdir(parents=True, exist_ok=True)
    store = TokenStore.open(tokens_path)
    token = store.ensure("default")
    store.ensure("codex")
    with ProxyProcess(config, listen, env=dict(os.environ, PW=pg.passwords["scram_user"])) as proxy:
        yield Stack(pg, proxy, spec.port, store, token, [])


def query(stack: Stack, client: str, sslmode: str, password: str | None):  # type: ignore[no-untyped-def]
    result = CLIENTS[client](stack.port, "scram_user", sslmode=sslmode, password=password)
    stack.outputs.append(result.error + repr(result.rows))
    return result


@pytest.mark.parametrize("sslmode", ["require", "disable"])  # cleartext inside TLS / SCRAM-SHA-256 without
@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_proxy_token_as_the_password(stack: Stack, client: str, sslmode: str) -> None:
    result = query(stack, client, sslmode, stack.token)
    assert result.ok, result.error
    assert result.rows[0][0] == "scram_user"


@pytest.mark.parametrize("sslmode", ["require", "disable"])
@pytest.mark.parametrize("client", list(CLIENTS))
def test_a_wrong_token_is_refused_before_the_server(stack: Stack, client: str, sslmode: str) -> None:
    before = stack.proxy.logs().count("connecting to the upstream")
    for password in ("not-a-token", stack.pg.passwords["scram_user"]):  # even the real password is not enough
        result = query(stack, client, sslmode, password)
        assert not result.ok and "the password is not a valid proxy token" in result.error
    assert stack.proxy.logs().count("connecting to the upstream") == before


def test_no_password_at_all(stack: Stack) -> None:
    result = query(stack, "psql", "require", None)
    assert not result.ok and "password" in result.error


def test_the_token_name_is_logged_never_its_value(stack: Stack) -> None:
    assert query(stack, "psql", "require", stack.store.value("codex")).ok
    logs = stack.proxy.logs()
    assert "token=codex" in logs
    assert stack.token not in logs and stack.store.value("codex") not in logs


def test_a_rotated_token_ends_its_open_sessions(stack: Stack) -> None:
    import psycopg

    value = stack.store.value("codex")
    with psycopg_connect(stack.port, "scram_user", sslmode="require", password=value) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
        stack.store.rotate("codex")
        deadline = time.monotonic() + 20
        ended = False
        while time.monotonic() < deadline and not ended:
            try:
                conn.execute("select 1")
                time.sleep(0.2)
            except psycopg.OperationalError:
                ended = True
        assert ended, "the session outlived its token"
    assert "proxy token revoked or rotated: closing its session" in stack.proxy.logs()
    assert not query(stack, "psql", "require", value).ok
    assert query(stack, "psql", "require", stack.store.value("codex")).ok


def test_canary(stack: Stack) -> None:
    # a session with each token and a refused one, whichever tests ran before this one
    for password in (stack.token, stack.store.value("codex"), "not-a-token"):
        query(stack, "psql", "require", password)
    stack.proxy.stop()  # its last log lines too
    try:
        seen = "\n".join([*stack.outputs, stack.proxy.logs()])
        for secret in (stack.pg.passwords["scram_user"], stack.token, stack.store.value("codex")):
            assert secret not in seen
    finally:
        stack.proxy.start()  # the module's proxy again for the tests that run after this one
