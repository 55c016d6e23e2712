"""Long and wide sessions through a listener against a real PostgreSQL: cancel of a long ``pg_sleep`` from each
client (forwarded over a new verified TLS connection), COPY of 1 GiB each way at flat proxy RSS,
LISTEN/NOTIFY, and 200 concurrent sessions."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from cordon_testing.postgres import (
    ListenerSpec,
    PostgresServer,
    asyncpg_connect,
    free_port,
    psycopg_connect,
    rss_kib,
    write_listener_config,
)
from cordon_testing.proxy import ProxyProcess

pytestmark = pytest.mark.e2e

GIB = 1 << 30
ROW = b"x" * 1023 + b"\n"  # COPY text rows of 1 KiB


@dataclass
class Stack:
    pg: PostgresServer
    proxy: ProxyProcess
    tls: int  # client TLS accepted, upstream verify-full
    plain: int  # plain TCP both sides (the fastest path, for the bulk transfers)


@pytest.fixture(scope="module")
def stack(pg: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    directory = tmp_path_factory.mktemp("pg-sessions")
    secret = {"source": "env", "var": "PW"}
    specs = [ListenerSpec("tls", free_port(), f"localhost:{pg.port}", "scram_user", secret),
             ListenerSpec("plain", free_port(), f"localhost:{pg.port}", "scram_user", secret, client_tls="disable",
                          upstream_tls="disable")]
    listen = free_port()
    config = write_listener_config(directory, listen, specs, upstream_ca_file=pg.ca_pem)
    with ProxyProcess(config, listen, env=dict(os.environ, PW=pg.passwords["scram_user"]),
                      args=("--log-level", "info")) as proxy:
        yield Stack(pg, proxy, specs[0].port, specs[1].port)


def wait_for_sleeper(pg: PostgresServer, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pg.sql("select count(*) from pg_stat_activity where query like 'select pg_sleep(30)%'").strip() != "0":
            return
        time.sleep(0.05)
    raise AssertionError("the long query never started")


# -- cancel ---------------------------------------------------------------------------------------------------


def test_cancel_from_psql(stack: Stack) -> None:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"]}
    proc = subprocess.Popen(["psql", "-X", f"host=127.0.0.1 port={stack.tls} user=scram_user dbname=app "
                             "sslmode=require", "-c", "select pg_sleep(30)"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        wait_for_sleeper(stack.pg)
        proc.send_signal(signal.SIGINT)  # psql sends a CancelRequest on a new connection
        _, stderr = proc.communicate(timeout=25)
    finally:
        proc.kill()
    assert "canceling statement due to user request" in stderr
    deadline = time.monotonic() + 10  # the line is written once the server has closed the cancel connection
    while "pg: cancel request forwarded" not in stack.proxy.logs() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "pg: cancel request forwarded" in stack.proxy.logs()


def test_cancel_from_psycopg(stack: Stack) -> None:
    import psycopg

    with psycopg_connect(stack.tls, "scram_user", sslmode="require") as conn:
        timer = threading.Thread(target=lambda: (wait_for_sleeper(stack.pg), conn.cancel_safe()))
        timer.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            conn.execute("select pg_sleep(30)")
        timer.join(30)
        assert conn.execute("select 42").fetchone() == (42,)  # the session survives its cancelled query


def test_cancel_from_asyncpg(stack: Stack) -> None:
    async def run() -> None:
        conn = await asyncpg_connect(stack.tls, "scram_user", ssl="require")
        try:
            query = asyncio.ensure_future(conn.execute("select pg_sleep(30)"))
            await asyncio.to_thread(wait_for_sleeper, stack.pg)
            query.cancel()  # asyncpg sends a CancelRequest for the running query
            with pytest.raises(asyncio.CancelledError):
                await query
            assert await conn.fetchval("select 7") == 7
        finally:
            await conn.close()

    asyncio.run(run())
    still = stack.pg.sql("select count(*) from pg_stat_activity where query like 'select pg_sleep(30)%' "
                         "and state = 'active'")
    assert still.strip() == "0"


# -- volume -----------------------------------------------------------------------------------------------------


class RssSampler:
    """Samples the proxy's RSS every 50 ms while a transfer runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append(rss_kib(self.pid))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def test_copy_of_1_gib_each_way_at_flat_proxy_rss(stack: Stack) -> None:
    assert stack.proxy.proc is not None
    pid = stack.proxy.proc.pid
    with psycopg_connect(stack.plain, "scram_user", sslmode="disable") as conn:
        conn.execute("create temporary table sink (line text)")
        baseline = rss_kib(pid)
        block = ROW * 1024  # 1 MiB
        upload_sql = "copy sink from stdin where false"  # every row crosses the wire, is parsed, then dropped
        with RssSampler(pid) as upload, conn.cursor().copy(upload_sql) as copy:
            for _ in range(GIB // len(block)):
                copy.write(block)
        received = 0
        download_sql = f"copy (select repeat('x', 1023) from generate_series(1, {GIB // 1024})) to stdout"
        with RssSampler(pid) as download, conn.cursor().copy(download_sql) as copy:
            for data in copy:
                received += len(data)
        assert received == GIB
        assert conn.execute("select 1").fetchone() == (1,)
    peak = max(upload.samples + download.samples)
    assert len(upload.samples) > 3 and len(download.samples) > 3
    print(f"proxy RSS: {baseline} KiB before, peak {peak} KiB while 2 GiB went through")
    assert peak - baseline < 48 * 1024, (baseline, peak)  # KiB: flat, nothing like the GiB that went through


def test_listen_notify(stack: Stack) -> None:
    with psycopg_connect(stack.tls, "scram_user") as listener, psycopg_connect(stack.plain, "scram_user") as talker:
        listener.execute("listen cordon_channel")
        talker.execute("select pg_notify('cordon_channel', 'hello through cordon')")
        talker.execute("notify cordon_channel, 'second'")
        got = [n.payload for n in listener.notifies(timeout=10, stop_after=2)]
    assert got == ["hello through cordon", "second"]


def test_200_concurrent_sessions(stack: Stack) -> None:
    async def one(i: int) -> int:
        conn = await asyncpg_connect(stack.plain if i % 2 else stack.tls, "scram_user",
                                     ssl="disable" if i % 2 else "require")
        try:
            await conn.execute("select pg_sleep(0.5)")  # all 200 are open at once
            return int(await conn.fetchval("select $1::int", i))
        finally:
            await conn.close()

    async def run() -> list[int]:
        return list(await asyncio.gather(*(one(i) for i in range(200))))

    assert asyncio.run(run()) == list(range(200))
    logs = stack.proxy.logs()
    assert logs.count("pg: session started") >= 200 and "Traceback" not in logs
