"""DNS pinning against a real PostgreSQL and a real ``cordon start``: once a session is set up, its cancel requests
go to the address cordon connected to, even after the upstream's name has been pointed somewhere else.

The attack: the listener's upstream is a name that resolves (through the hosts file of the proxy's mount
namespace) to 127.0.0.1, where the real server listens. A session runs a long query; then the name is pointed at
127.0.0.2, where a decoy records every connection; then the client cancels. A cancel path that resolved the name
again would hand the session's cancel key to the decoy (and leave the query running). A session started after
the change resolves afresh and goes to the new address: pinning is per session.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cordon_pg import protocol as pq
from cordon_testing.postgres import (
    ListenerSpec,
    PostgresServer,
    free_port,
    psycopg_connect,
    write_listener_config,
)
from cordon_testing.proxy import ProxyProcess

pytestmark = pytest.mark.e2e

REAL, DECOY = "127.0.0.1", "127.0.0.2"
SLEEP = "select pg_sleep(30) -- dns pinning"  # the comment tells this query from other tests'
PROTOCOL_3 = b"\x00\x03\x00\x00"


@dataclass
class Decoy:
    """Listens on ``host:port``; records the first bytes of every connection it accepts, then hangs up."""

    host: str
    port: int
    connections: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.create_server((self.host, self.port))
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="pg-decoy", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(8192)
                except OSError:
                    data = b""
            with self._lock:
                self.connections.append(data)

    def seen(self) -> list[bytes]:
        with self._lock:
            return list(self.connections)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(): close() alone would not
        self._sock.close()
        self._thread.join(10)


@pytest.fixture
def decoy(pg: PostgresServer) -> Iterator[Decoy]:
    """A decoy on the real server's port at the other loopback address (the listener's upstream port is fixed)."""
    try:
        server = Decoy(DECOY, pg.port)
    except OSError as exc:
        pytest.skip(f"cannot listen on {DECOY}:{pg.port}: {exc}")
    try:
        yield server
    finally:
        server.close()


def wait_for_sleeper(pg: PostgresServer, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.sql(f"select count(*) from pg_stat_activity where query = '{SLEEP}'").strip() != "0":
            return
        time.sleep(0.05)
    raise AssertionError("the long query never started")


def wait_for_log(proxy: ProxyProcess, text: str, timeout: float = 10) -> str:
    deadline = time.monotonic() + timeout
    while text not in proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    return proxy.logs()


@pytest.mark.parametrize(("name", "upstream_tls"), [("db.test", "disable"), ("localhost", "verify-full")],
                         ids=["plain", "verify-full"])
def test_cancel_goes_to_the_address_the_session_connected_to_after_dns_changes(
    pg: PostgresServer, decoy: Decoy, tmp_path: Path, name: str, upstream_tls: str
) -> None:
    import psycopg

    port, listen = free_port(), free_port()
    spec = ListenerSpec("db", port, f"{name}:{pg.port}", "scram_user", {"source": "env", "var": "PW"},
                        upstream_tls=upstream_tls)
    config = write_listener_config(tmp_path, listen, [spec], upstream_ca_file=pg.ca_pem)
    env = dict(os.environ, PW=pg.passwords["scram_user"])
    with ProxyProcess(config, listen, env=env, resolve={name: REAL}, args=("--log-level", "info")) as proxy:
        with psycopg_connect(port, "scram_user", sslmode="require") as conn:
            assert conn.execute("select host(inet_server_addr())").fetchone() == (REAL,)
            assert f"address={REAL}" in proxy.logs()

            proxy.resolve_to({name: DECOY})  # the name now points at the decoy, mid-session

            def cancel() -> None:
                wait_for_sleeper(pg)
                conn.cancel_safe()  # a CancelRequest to cordon, which forwards it upstream

            canceller = threading.Thread(target=cancel)
            canceller.start()
            outcome: Exception | None = None
            try:
                conn.execute(SLEEP)
            except psycopg.Error as exc:
                outcome = exc
            canceller.join(30)
            logs = wait_for_log(proxy, "pg: cancel request")

            assert decoy.seen() == [], "the cancel request went to the name's new address"
            assert isinstance(outcome, psycopg.errors.QueryCanceled), outcome
            assert outcome.sqlstate == "57014"
            assert "pg: cancel request forwarded" in logs, logs
            active = pg.sql(f"select count(*) from pg_stat_activity where query = '{SLEEP}' and state = 'active'")
            assert active.strip() == "0"  # stopped at the real server
            assert conn.execute("select host(inet_server_addr())").fetchone() == (REAL,)  # same session, same place

        # A new session resolves the name again: it goes to the decoy (which hangs up), not to the old address.
        with pytest.raises(psycopg.OperationalError):
            psycopg_connect(port, "scram_user", sslmode="require").close()
    seen = decoy.seen()
    assert len(seen) == 1, seen
    if upstream_tls == "verify-full":
        assert seen[0] == pq.ssl_request()  # cordon asks for TLS first and sends nothing more to an unverified peer
    else:
        assert seen[0][4:8] == PROTOCOL_3 and b"user\x00scram_user\x00" in seen[0]  # the new session's startup
