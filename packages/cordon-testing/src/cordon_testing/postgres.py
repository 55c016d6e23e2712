"""Test helpers (loopback only, every wait bounded): a real PostgreSQL server and cordon configs with listeners.

* :class:`PostgresServer`: ``initdb`` + ``pg_ctl`` from Debian's ``postgresql`` package in a throwaway directory,
  run as an unprivileged user when we are root (the server refuses root): ``postgres`` when the package created
  it, else ``nobody``. TLS on, with a certificate for ``localhost`` from a trustme CA; ``pg_hba.conf`` gives
  each test user one method (``scram_user`` scram-sha-256, ``md5_user`` md5, ``plain_user`` password) over TCP,
  the superuser ``trust`` on the private unix socket only. Each password is a random canary.
* :func:`write_listener_config`: a cordon.toml with ``[[listeners]]`` and the server's CA as upstream_ca_file.
* the three real clients the listeners are tested with: :func:`psql`, psycopg 3 (libpq) and asyncpg (its own
  implementation of the protocol), each returning a :class:`Result` (ok, rows, the error a user sees).

Imported only by tests and the benchmark; needs ``trustme``, ``psycopg`` and ``asyncpg`` (dev dependencies).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cordon_config.ports import free_port

TIMEOUT = 30.0
METHODS = {"scram_user": "scram-sha-256", "md5_user": "md5", "plain_user": "password"}


def find_pg_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl`` (Debian keeps them off PATH), or None."""
    found = shutil.which("initdb")
    if found and shutil.which("pg_ctl"):
        return Path(os.path.realpath(found)).parent
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if os.access(os.path.join(directory, "initdb"), os.X_OK):
            return Path(directory)
    return None


def _version_key(path: str) -> tuple[int, ...]:
    digits = "".join(ch if ch.isdigit() else " " for ch in path).split()
    return tuple(int(d) for d in digits)


def missing_reason() -> str | None:
    """Why the PostgreSQL tests cannot run here (None when they can)."""
    if find_pg_bin() is None:
        return "no PostgreSQL server (initdb/pg_ctl) on this machine: apt-get install postgresql"
    if shutil.which("psql") is None:
        return "no psql on this machine: apt-get install postgresql-client"
    if os.geteuid() == 0 and _server_user() is None:
        return "running as root and no unprivileged user (postgres or nobody) to run the server as"
    return None


def _server_user() -> pwd.struct_passwd | None:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    return None


def canary(label: str) -> str:
    """A random, recognisable value that must never show up in any output, log or file."""
    return f"cordon-canary-{label}-{secrets.token_hex(10)}"


@dataclass
class PostgresServer:
    """A PostgreSQL server on 127.0.0.1:``port`` for the duration of a ``with`` block."""

    tls: bool = True
    max_connections: int = 260
    port: int = field(default_factory=free_port)
    passwords: dict[str, str] = field(default_factory=lambda: {user: canary(user) for user in METHODS})
    settings: Mapping[str, str] = field(default_factory=dict)
    root: Path = field(init=False)
    ca_pem: Path = field(init=False)

    def __post_init__(self) -> None:
        found = find_pg_bin()
        if found is None:
            raise RuntimeError(missing_reason() or "no PostgreSQL")
        self.bin = found
        self.user = _server_user() if os.geteuid() == 0 else None
        self.root = Path(tempfile.mkdtemp(prefix="cordon-pg-"))  # outside pytest's 0700 tmp: the server user
        self.data = self.root / "data"                            # must reach it
        self.socket_dir = self.root / "sock"
        self.ca_pem = self.root / "upstream-ca.pem"
        self.log_path = self.root / "server.log"

    # -- running as the server user -------------------------------------------------------------------
    def _run(self, argv: Sequence[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
        extra: dict[str, Any] = {}
        if self.user is not None:
            extra = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        env = {"PATH": f"{self.bin}:/usr/bin:/bin", "LANG": "C", "LC_ALL": "C", "HOME": str(self.root)}
        return subprocess.run(list(argv), capture_output=True, text=True, env=env, timeout=TIMEOUT, check=False,
                              cwd=self.root, **extra, **kwargs)

    def _own(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def start(self) -> PostgresServer:
        import trustme

        try:
            self.root.chmod(0o755)
            self._own(self.root)
            result = self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                "--no-sync", "-E", "UTF8", "--locale=C"])
            if result.returncode != 0:
                raise RuntimeError(f"initdb failed: {result.stderr[-2000:]}")
            self.socket_dir.mkdir()
            self._own(self.socket_dir)
            lines = [
                "listen_addresses = '127.0.0.1'", f"port = {self.port}",
                f"unix_socket_directories = '{self.socket_dir}'", f"max_connections = {self.max_connections}",
                "fsync = off", "synchronous_commit = off", "full_page_writes = off", "shared_buffers = 32MB",
                "log_min_messages = warning", "password_encryption = 'scram-sha-256'",
            ]
            if self.tls:
                ca = trustme.CA()
                ca.cert_pem.write_to_path(str(self.ca_pem))
                leaf = ca.issue_cert("localhost")
                cert, key = self.data / "server.crt", self.data / "server.key"
                leaf.cert_chain_pems[0].write_to_path(str(cert))
                leaf.private_key_pem.write_to_path(str(key))
                for path in (cert, key):
                    path.chmod(0o600)
                    self._own(path)
                lines += ["ssl = on", "ssl_cert_file = 'server.crt'", "ssl_key_file = 'server.key'"]
            lines += [f"{key} = {value}" for key, value in self.settings.items()]
            with open(self.data / "postgresql.conf", "a", encoding="utf-8") as conf:
                conf.write("\n".join(lines) + "\n")
            hba = ["local all postgres trust"]
            hba += [f"host all {user} 127.0.0.1/32 {method}" for user, method in METHODS.items()]
            (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n", encoding="utf-8")
            result = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log_path), "-w",
                                "-t", str(int(TIMEOUT)), "start"])
            if result.returncode != 0:
                raise RuntimeError(f"pg_ctl start failed: {result.stderr[-1000:]}\n{self.server_log()[-2000:]}")
            for user, method in METHODS.items():
                encryption = "md5" if method == "md5" else "scram-sha-256"
                self.sql(f"SET password_encryption = '{encryption}'; "
                         f"CREATE ROLE {user} LOGIN PASSWORD '{self.passwords[user]}'; "
                         f"GRANT ALL ON SCHEMA public TO {user};")
            self.sql("CREATE DATABASE app")
            self.sql("GRANT ALL ON SCHEMA public TO PUBLIC", database="app")
        except BaseException:
            self.stop()
            raise
        return self

    def sql(self, statement: str, *, database: str = "postgres") -> str:
        """Run ``statement`` as the superuser over the private unix socket; returns psql's output."""
        result = subprocess.run(
            ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir), "-p", str(self.port),
             "-U", "postgres", "-d", database, "-c", statement],
            capture_output=True, text=True, timeout=TIMEOUT, check=False, env={"PATH": os.environ.get("PATH", "")},
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed: {result.stderr.strip()[-500:]}")
        return result.stdout

    def server_log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.data.exists() and (self.data / "postmaster.pid").exists():
            self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass(frozen=True)
class ListenerSpec:
    """One ``[[listeners]]`` table for :func:`write_listener_config`."""

    name: str
    port: int
    upstream: str
    username: str
    secret: Mapping[str, Any]  # e.g. {"source": "env", "var": "PG_PW"}
    client_tls: str = "accept"
    upstream_tls: str = "verify-full"


def write_listener_config(directory: Path, listen: int, listeners: Sequence[ListenerSpec], *,
                          upstream_ca_file: Path | None = None, secret_ttl: float = 10, extra: str = "") -> Path:
    """Write ``directory/cordon.toml`` (CA under ``directory/state/certs``) and return its path."""
    import json  # a JSON string or array of strings is also valid TOML

    certs = directory / "state" / "certs"
    lines = [f"listen = {listen}", f"secret_ttl = {secret_ttl}", "", "[tls]", "enabled = true",
             f"ca_cert_path = {json.dumps(str(certs / 'ca-cert.pem'))}",
             f"ca_key_path = {json.dumps(str(certs / 'ca-key.pem'))}"]
    if upstream_ca_file is not None:
        lines.append(f"upstream_ca_file = {json.dumps(str(upstream_ca_file))}")
    for spec in listeners:
        lines += ["", "[[listeners]]", f'name = "{spec.name}"', f"port = {spec.port}",
                  f'upstream = "{spec.upstream}"', f'client_tls = "{spec.client_tls}"',
                  f'upstream_tls = "{spec.upstream_tls}"', "[listeners.auth]", 'type = "password"',
                  f'username = "{spec.username}"', "[listeners.auth.secret]"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in spec.secret.items()]
    path = directory / "cordon.toml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


def wait_port(port: int, timeout: float = TIMEOUT) -> None:
    """Wait until something accepts on 127.0.0.1:``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout} s")


def rss_kib(pid: int) -> int:
    """The resident set size of ``pid`` in KiB (from /proc)."""
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


@contextlib.contextmanager
def running_postgres(**kwargs: Any) -> Iterator[PostgresServer]:
    """``with running_postgres() as pg:`` (skipping is the caller's job: see :func:`missing_reason`)."""
    server = PostgresServer(**kwargs)
    with server:
        yield server


# -- clients -----------------------------------------------------------------------------------------------

QUERY = "select current_user, coalesce((select ssl from pg_stat_ssl where pid = pg_backend_pid()), false)"


@dataclass
class Result:
    ok: bool
    rows: list[tuple[Any, ...]]
    error: str  # the client's error text (what a user sees)


def psql(port: int, user: str, *, sslmode: str = "prefer", password: str | None = None, query: str = QUERY,
         dbname: str = "app", timeout: float = 30) -> Result:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/")}
    if password is not None:
        env["PGPASSWORD"] = password
    result = subprocess.run(
        ["psql", "-X", "-A", "-t", "-w", "-F", "|", f"host=127.0.0.1 port={port} user={user} dbname={dbname} "
         f"sslmode={sslmode} connect_timeout=10", "-c", query],
        capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL,
    )
    rows = [tuple(line.split("|")) for line in result.stdout.splitlines() if line]
    return Result(result.returncode == 0, rows, result.stderr + result.stdout if result.returncode else "")


def psycopg_connect(port: int, user: str, *, sslmode: str = "prefer", password: str | None = None,
                    dbname: str = "app") -> Any:
    import psycopg

    return psycopg.connect(host="127.0.0.1", port=port, user=user, dbname=dbname, sslmode=sslmode,
                           password=password, connect_timeout=10, autocommit=True)


def psycopg_query(port: int, user: str, *, sslmode: str = "prefer", password: str | None = None,
                  query: str = QUERY) -> Result:
    import psycopg

    try:
        with psycopg_connect(port, user, sslmode=sslmode, password=password) as conn:
            rows = conn.execute(query).fetchall()
            return Result(True, [tuple("t" if v is True else "f" if v is False else v for v in r) for r in rows], "")
    except psycopg.Error as exc:
        return Result(False, [], str(exc))


async def asyncpg_connect(port: int, user: str, *, ssl: Any = "prefer", password: str | None = None,
                          database: str = "app") -> Any:
    import asyncpg

    return await asyncpg.connect(host="127.0.0.1", port=port, user=user, database=database, ssl=ssl,
                                 password=password, timeout=10)


def asyncpg_query(port: int, user: str, *, sslmode: str = "prefer", password: str | None = None,
                  query: str = QUERY) -> Result:
    import asyncpg

    async def run() -> Result:
        try:
            conn = await asyncpg_connect(port, user, ssl=sslmode, password=password)
        except (asyncpg.PostgresError, OSError, asyncpg.InterfaceError) as exc:
            # asyncpg closes a refused TLS connection without waiting for the TLS shutdown; give the loop a
            # moment to finish it, or asyncio.run() ends first and the socket is left for the GC to warn about
            await asyncio.sleep(0.05)
            return Result(False, [], str(exc))
        try:
            rows = await conn.fetch(query)
            return Result(True, [tuple("t" if v is True else "f" if v is False else v for v in r) for r in rows], "")
        finally:
            await conn.close()

    return asyncio.run(run())


CLIENTS = {"psql": psql, "psycopg": psycopg_query, "asyncpg": asyncpg_query}
