"""PostgreSQL listener benchmark: pgbench directly, through cordon and through PgBouncer, in one interleaved run.

    uv run python bench/pg.py            # full run (~7 min), writes its section of bench/RESULTS.md
    uv run python bench/pg.py --quick    # short development run (~1 min), prints only

One real PostgreSQL (Debian's package, started here by cordon_testing.postgres) serves every target. The targets, all
on 127.0.0.1 and all without a client password (cordon with tokens off, PgBouncer with ``auth_type = trust``),
logging in to the server with SCRAM-SHA-256 as ``scram_user``:

* ``direct``: pgbench to the server itself (SCRAM from pgbench); ``direct-tls`` the same over TLS (the
  reference for the TLS rows: what a TLS login costs without any proxy);
* ``cordon`` / ``pgbouncer``: plain TCP on both legs (PgBouncer in session mode, one pool);
* ``cordon-tls`` / ``pgbouncer-tls``: the same with verify-full TLS to the server (the client leg stays plain).

Pinning (PERFORMANCE.md C.2): the proxy under test on core 0; the server and pgbench on core 1 for every
target, direct included. Workloads: ``pgbench -S`` (select-only) and the default TPC-B-like script, the same
client count for all, ``-T`` seconds each, targets rotated every round; per-transaction latencies from
pgbench's ``--log``; the proxy's CPU from /proc; connection setup from ``pgbench -C`` (a new connection, its
authentication included, for every transaction). See docs/performance.md#postgresql-listener.
"""

from __future__ import annotations

import argparse
import datetime as dt
import glob
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cordon_config.proxyproc import proxy_argv
from cordonbench import procs
from cordonbench.stats import fmt_num, fmt_ratio, median, percentile, render_markdown

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
BEGIN = "<!-- bench/pg.py: begin (generated, replaced on every run) -->"
END = "<!-- bench/pg.py: end -->"
START = time.monotonic()
TARGETS = ("direct", "cordon", "pgbouncer", "direct-tls", "cordon-tls", "pgbouncer-tls")
WORKLOADS = {"select": ["-S"], "tpcb": []}


def log(msg: str) -> None:
    sys.stderr.write(f"[{time.monotonic() - START:6.1f}s] {msg}\n")
    sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bench/pg.py", description=__doc__.split("\n\n")[0],
                                epilog="examples:\n  uv run python bench/pg.py\n  uv run python bench/pg.py --quick",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=int, default=10, help="seconds per pgbench run (default 10)")
    p.add_argument("--clients", type=int, default=8, help="pgbench clients, the same for every target (default 8)")
    p.add_argument("--scale", type=int, default=5, help="pgbench scale factor (default 5)")
    p.add_argument("--quick", action="store_true", help="1 round of 3 s runs; prints only")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    p.add_argument("--out", type=Path, default=BENCH / "RESULTS.md", help="results file (default bench/RESULTS.md)")
    return p


@dataclass
class Run:
    """One pgbench run's figures."""

    tps: float
    transactions: int
    latencies_ms: list[float]
    cpu_s: float | None
    connection_ms: float | None = None


@dataclass
class Results:
    """Per (figure, target) lists of per-round values."""

    values: dict[tuple[str, str], list[float]] = field(default_factory=dict)

    def add(self, figure: str, target: str, value: float | None) -> None:
        if value is not None:
            self.values.setdefault((figure, target), []).append(value)

    def med(self, figure: str, target: str) -> float | None:
        vals = self.values.get((figure, target))
        return median(vals) if vals else None


class PgBench:
    """Everything one run starts; ``close`` stops it all."""

    def __init__(self, args: argparse.Namespace) -> None:
        from cordon_testing.postgres import PostgresServer, missing_reason

        reason = missing_reason()
        if reason is not None:
            raise SystemExit(f"bench/pg.py: {reason}")
        for tool in ("pgbench", "pgbouncer", "taskset"):
            if shutil.which(tool) is None:
                raise SystemExit(f"bench/pg.py: {tool} is not installed (apt-get install "
                                 f"{'postgresql-contrib' if tool == 'pgbench' else tool})")
        self.args = args
        self.pg = PostgresServer(max_connections=100, settings={"max_wal_size": "'1GB'"})
        self.work = Path(tempfile.mkdtemp(prefix="cordon-pgbench-"))
        self.proxies: dict[str, subprocess.Popen[bytes]] = {}
        self.ports: dict[str, int] = {}

    # -- setup -------------------------------------------------------------------------------------------
    def start(self) -> None:
        pg = self.pg
        pg.start()
        pid = int((pg.data / "postmaster.pid").read_text().split()[0])
        subprocess.run(["taskset", "-a", "-c", "-p", "1", str(pid)], check=True, capture_output=True, timeout=10)
        pg.sql("CREATE DATABASE bench OWNER scram_user")
        log(f"PostgreSQL on 127.0.0.1:{pg.port} (pinned to core 1); pgbench -i -s {self.args.scale}")
        init = subprocess.run(["pgbench", "-i", "-q", "-s", str(self.args.scale), *self._conn("direct")],
                              env=self._env("direct"), capture_output=True, text=True, timeout=600)
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i failed: {init.stderr[-1000:]}")
        pg.sql("VACUUM ANALYZE", database="bench")
        self.ports["direct"] = self.ports["direct-tls"] = pg.port
        self._start_cordon()
        self._start_pgbouncer()

    def _start_cordon(self) -> None:
        from cordon_testing.postgres import ListenerSpec, write_listener_config

        listen = procs.free_port()
        secret = {"source": "env", "var": "CORDON_BENCH_PG_PASSWORD"}
        specs = [ListenerSpec("bench", procs.free_port(), f"localhost:{self.pg.port}", "scram_user", secret,
                              client_tls="disable", upstream_tls="disable"),
                 ListenerSpec("bench-tls", procs.free_port(), f"localhost:{self.pg.port}", "scram_user", secret,
                              client_tls="disable", upstream_tls="verify-full")]
        directory = self.work / "cordon"
        directory.mkdir()
        config = write_listener_config(directory, listen, specs, upstream_ca_file=self.pg.ca_pem)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        env.update(HOME=str(directory), XDG_CONFIG_HOME=str(directory / ".config"),
                   CORDON_BENCH_PG_PASSWORD=self.pg.passwords["scram_user"])
        from cordon_testing.config import approve_config

        approve_config(config, env=env, cwd=directory)  # as the person running the bench would: approve --all
        out = open(directory / "cordon.log", "wb")  # noqa: SIM115 - lives as long as the proxy
        proc = subprocess.Popen(procs.pinned(proxy_argv(config), 0),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        self.proxies["cordon"] = self.proxies["cordon-tls"] = proc
        procs.wait_port(specs[1].port, proc, 30, "cordon")
        self.ports["cordon"], self.ports["cordon-tls"] = specs[0].port, specs[1].port
        log(f"cordon listeners on 127.0.0.1:{specs[0].port} (plain) and :{specs[1].port} (TLS to the server)")

    def _start_pgbouncer(self) -> None:
        pg = self.pg
        for target, tls in (("pgbouncer", False), ("pgbouncer-tls", True)):
            directory = pg.root / target  # the server's user owns pg.root; pgbouncer refuses to run as root
            directory.mkdir()
            port = procs.free_port()
            password = pg.passwords["scram_user"]
            (directory / "userlist.txt").write_text(f'"scram_user" "{password}"\n', encoding="utf-8")
            lines = [
                "[databases]",
                f"bench = host=localhost port={pg.port} dbname=bench user=scram_user",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1", f"listen_port = {port}", "unix_socket_dir =",
                "auth_type = trust", f"auth_file = {directory / 'userlist.txt'}",
                "pool_mode = session", "max_client_conn = 200", "default_pool_size = 20",
                f"logfile = {directory / 'pgbouncer.log'}", f"pidfile = {directory / 'pgbouncer.pid'}",
                "ignore_startup_parameters = extra_float_digits",
            ]
            if tls:
                lines += ["server_tls_sslmode = verify-full", f"server_tls_ca_file = {pg.ca_pem}"]
            (directory / "pgbouncer.ini").write_text("\n".join(lines) + "\n", encoding="utf-8")
            for path in (directory, *directory.iterdir()):
                pg._own(path)
            extra = {}
            if pg.user is not None:
                extra = {"user": pg.user.pw_uid, "group": pg.user.pw_gid, "extra_groups": []}
            proc = subprocess.Popen(procs.pinned(["pgbouncer", str(directory / "pgbouncer.ini")], 0),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                    **extra)
            self.proxies[target] = proc
            procs.wait_port(port, proc, 30, target)
            self.ports[target] = port
        log(f"pgbouncer (session mode) on :{self.ports['pgbouncer']} (plain) and :{self.ports['pgbouncer-tls']} "
            "(TLS to the server)")

    # -- running -----------------------------------------------------------------------------------------
    def _conn(self, target: str) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.ports.get(target, self.pg.port)), "-U", "scram_user", "bench"]

    def _env(self, target: str) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.work),
               "PGSSLMODE": "require" if target == "direct-tls" else "disable", "PGCONNECT_TIMEOUT": "10"}
        if target.startswith("direct"):
            env["PGPASSWORD"] = self.pg.passwords["scram_user"]  # the others need none: the proxy logs in
        return env

    def pgbench(self, target: str, workload: str, *, connect: bool = False) -> Run:
        args = self.args
        logdir = Path(tempfile.mkdtemp(dir=self.work))
        argv = procs.pinned(["pgbench", "-n", "-c", str(args.clients), "-j", "1", "-T", str(args.duration),
                             *WORKLOADS[workload], *(["-C"] if connect else ["--log", "--log-prefix",
                                                                             str(logdir / "tx")]),
                             *self._conn(target)], 1)
        proxy = self.proxies.get(target)
        before = procs.cpu_seconds(proxy.pid) if proxy is not None else None
        result = subprocess.run(argv, env=self._env(target), capture_output=True, text=True,
                                timeout=args.duration + 60)
        cpu = procs.cpu_seconds(proxy.pid) - before if proxy is not None and before is not None else None
        if result.returncode != 0:
            raise RuntimeError(f"pgbench {target} {workload} failed: {result.stderr[-1500:]}")
        text = result.stdout
        tps = float(re.search(r"tps = ([\d.]+) \((?:without initial connection time|including reconnection)",
                              text).group(1))
        done = int(re.search(r"number of transactions actually processed: (\d+)", text).group(1))
        connection = re.search(r"average connection time = ([\d.]+) ms", text)
        latencies = []
        for path in glob.glob(str(logdir / "tx*")):
            with open(path, encoding="ascii") as handle:
                latencies += [int(line.split()[2]) / 1000 for line in handle if line.strip()]
        shutil.rmtree(logdir, ignore_errors=True)
        return Run(tps, done, latencies, cpu, float(connection.group(1)) if connection else None)

    def close(self) -> None:
        for proc in set(self.proxies.values()):
            procs.stop(proc)
        self.pg.stop()
        shutil.rmtree(self.work, ignore_errors=True)


FIGURES = (  # key, label, unit, higher is better
    ("tps_select", "select-only TPS (pgbench -S)", "tx/s", True),
    ("p50_select", "select-only latency p50", "ms", False),
    ("p99_select", "select-only latency p99", "ms", False),
    ("added50_select", "select-only added latency p50", "ms", False),
    ("added99_select", "select-only added latency p99", "ms", False),
    ("cpu_select", "proxy CPU per transaction, select-only", "µs", False),
    ("tps_tpcb", "TPC-B-like TPS (pgbench default)", "tx/s", True),
    ("p50_tpcb", "TPC-B-like latency p50", "ms", False),
    ("p99_tpcb", "TPC-B-like latency p99", "ms", False),
    ("added50_tpcb", "TPC-B-like added latency p50", "ms", False),
    ("added99_tpcb", "TPC-B-like added latency p99", "ms", False),
    ("cpu_tpcb", "proxy CPU per transaction, TPC-B-like", "µs", False),
    ("conn_ms", "connection setup, auth included (pgbench -C -S)", "ms", False),
    ("tps_connect", "select-only TPS with a new connection each (pgbench -C -S)", "tx/s", True),
)


def measure(bench: PgBench, rounds: int) -> Results:
    results = Results()
    for round_no in range(rounds):
        order = TARGETS[round_no % len(TARGETS):] + TARGETS[:round_no % len(TARGETS)]
        log(f"round {round_no + 1}/{rounds}: {', '.join(order)}")
        direct: dict[str, tuple[float, float]] = {}
        runs: dict[tuple[str, str], Run] = {}
        for target in order:
            for workload in WORKLOADS:
                run = bench.pgbench(target, workload)
                runs[(target, workload)] = run
                log(f"  {target:14} {workload:6} {run.tps:9.0f} tx/s")
            connect = bench.pgbench(target, "select", connect=True)
            results.add("conn_ms", target, connect.connection_ms)
            results.add("tps_connect", target, connect.tps)
        for (target, workload), run in runs.items():
            p50, p99 = percentile(run.latencies_ms, 50), percentile(run.latencies_ms, 99)
            results.add(f"tps_{workload}", target, run.tps)
            results.add(f"p50_{workload}", target, p50)
            results.add(f"p99_{workload}", target, p99)
            if target == "direct":
                direct[workload] = (p50, p99)  # every proxy's "added" is against the plain direct run
            if run.cpu_s is not None and run.transactions:
                results.add(f"cpu_{workload}", target, run.cpu_s / run.transactions * 1e6)
        for target, workload in runs:
            if not target.startswith("direct") and workload in direct:
                results.add(f"added50_{workload}", target, results.values[(f"p50_{workload}", target)][-1]
                            - direct[workload][0])
                results.add(f"added99_{workload}", target, results.values[(f"p99_{workload}", target)][-1]
                            - direct[workload][1])
    return results


def vs(results: Results, key: str, higher: bool, mine: str, peer: str) -> str:
    """How many times better ``mine`` is than ``peer`` (>1 = better); added figures compare as a difference."""
    a, b = results.med(key, mine), results.med(key, peer)
    if a is None or b is None:
        return "—"
    if key.startswith("added"):
        return f"{a - b:+.3f} ms"
    if higher:
        return fmt_ratio(a / b) if b else "—"
    return fmt_ratio(b / a) if a > 0 else "—"


def table(results: Results) -> str:
    headers = ["figure", *TARGETS, "cordon vs pgbouncer", "cordon-tls vs pgbouncer-tls"]
    rows = []
    for key, label, unit, higher in FIGURES:
        rows.append([f"{label} ({unit})", *(fmt_num(results.med(key, t)) for t in TARGETS),
                     vs(results, key, higher, "cordon", "pgbouncer"),
                     vs(results, key, higher, "cordon-tls", "pgbouncer-tls")])
    return render_markdown(headers, rows)


def environment(args: argparse.Namespace) -> str:
    def version(argv: list[str]) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "?"

    try:
        import uvloop

        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        loop = "asyncio"
    cpu = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{platform.python_implementation()} {platform.python_version()}, cordon on {loop}; "
            f"{version(['pgbench', '--version'])}; {version(['pgbouncer', '--version'])}; "
            f"{os.cpu_count()} CPUs ({cpu}); {args.clients} clients, {args.duration} s per run, "
            f"{args.rounds} rounds, scale {args.scale}")


def write_section(path: Path, section: str) -> None:
    existing = path.read_text(encoding="utf-8") if path.exists() else ""
    block = f"{BEGIN}\n{section.rstrip()}\n{END}\n"
    if BEGIN in existing and END in existing:
        head, rest = existing.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        text = head + block + (("\n" + tail) if tail else "")
    else:
        text = existing.rstrip("\n") + "\n\n" + block
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.no_write = 1, 3, True
    bench = PgBench(args)
    try:
        bench.start()
        results = measure(bench, args.rounds)
    finally:
        bench.close()
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    section = (f"## PostgreSQL listener: cordon vs direct vs PgBouncer\n\nRun {stamp}, "
               f"`uv run python bench/pg.py`, {time.monotonic() - START:.0f} s. {environment(args)}. Medians of the "
               "rounds; latencies are per transaction from pgbench's log; `added` is the target's percentile minus "
               "direct's in the same round; `vs` > 1× means cordon is better.\n\n" + table(results) + "\n")
    print(section)
    if not args.no_write:
        write_section(args.out, section)
        log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
