"""cordon benchmark: direct vs cordon vs mitmproxy vs proxy.py on loopback, interleaved, bounded in time.

    uv run python bench/run.py            # full run (~6–8 min), writes bench/RESULTS.md
    uv run python bench/run.py --quick    # short development run (~1–2 min), prints only

See docs/performance.md for what is measured and how to read the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import secrets
import shlex
import ssl
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from cordon_testing.namespaces import UNROUTED_ADDRESS, private_argv
from cordonbench import clients, loadgen, origins, peers, procs, tools
from cordonbench.certs import make_ca, make_leaf
from cordonbench.clients import Target
from cordonbench.report import FAIR_BEGIN, FAIR_END, Metric, detail_table, replace_section, summary_table
from cordonbench.stats import fmt_num, median, percentile

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / ".work"
ROUTED, UNROUTED = peers.ROUTED, peers.UNROUTED
SSE_EVENTS, SSE_INTERVAL = 50, 0.02
IDLE_CONNS = 200
FLOOD_CONNS = 2000
FIRST_HEAD_TIMEOUT = 5.0  # cordon's default [limits] first_head_timeout: the flood reaches steady state after it
# Set in the re-run inside the bench's private network namespace (see `main`).
INSIDE_ENV = "CORDON_BENCH_INSIDE_NAMESPACE"
BARE = "cordon-bare"  # cordon with response scrubbing and the audit log off: what those two cost
TARGETS = ("cordon", BARE, "mitmproxy", "proxy.py")
#: the goal for scrubbing + audit: CPU per request at most this much above cordon-bare, and
#: streamed MB/s within this much of it
POLICY_CPU_GOAL = 0.10
POLICY_STREAM_GOAL = 0.10
AB_CONNS, AB_RATE = 4, 150  # the at-once comparison: 4 connections x 150 req/s each through each proxy
START = time.monotonic()


def log(msg: str) -> None:
    """Progress line on stderr with the elapsed time."""
    sys.stderr.write(f"[{time.monotonic() - START:6.1f}s] {msg}\n")
    sys.stderr.flush()


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(
        prog="bench/run.py", description=__doc__.split("\n\n")[0],
        epilog="examples:\n  uv run python bench/run.py\n  uv run python bench/run.py --quick --only direct,cordon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per hey run (default 10)")
    p.add_argument("--warm-requests", type=int, default=500, help="sequential requests on one connection")
    p.add_argument("--new-conns", type=int, default=200, help="new connections per round and target")
    p.add_argument("--unseen", type=int, default=3, help="never-seen hosts per round and target")
    p.add_argument("--downloads", type=int, default=3, help="downloads of /big per host, round and target")
    p.add_argument("--sse-runs", type=int, default=2, help="SSE streams per round and target")
    p.add_argument("--quick", action="store_true", help="short development run; does not write RESULTS.md")
    p.add_argument("--only", default="", help="comma-separated targets (direct,cordon,cordon-bare,mitmproxy,"
                   "proxy.py); cordon-bare is cordon with scrubbing and the audit log off")
    p.add_argument("--no-profile", dest="profile", action="store_false",
                   help="skip the py-spy profile of cordon under hey (after the timed rounds; bench/.work/profile)")
    p.add_argument("--no-write", action="store_true", help="print only; leave bench/RESULTS.md alone")
    p.add_argument("--out", type=Path, default=BENCH / "RESULTS.md", help="results file (default bench/RESULTS.md)")
    p.add_argument("--no-cli", action="store_true", help="skip timing `cordon --help` / `cordon env`")
    p.add_argument("--fair-share", action="store_true",
                   help="only the fair-share figure (a token holder's new connection under a flood of "
                        "unauthenticated ones); writes its own section of the results file")
    p.add_argument("--flood", type=int, default=FLOOD_CONNS, help=f"flood connections (default {FLOOD_CONNS})")
    return p


class Bench:
    """Everything one run starts; ``close`` stops it all."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.peers: dict[str, peers.Peer] = {}
        self.skipped: dict[str, str] = {}
        self.secret = secrets.token_urlsafe(24)
        ncpu = len(os.sched_getaffinity(0))
        self.proxy_core = 0 if ncpu >= 2 else None
        self.load_core = 1 if ncpu >= 2 else None
        if self.load_core is not None:
            os.sched_setaffinity(0, {self.load_core})  # the clients, origins and load tools inherit core 1
        self.versions: dict[str, str] = {}
        self.pyspy: Path | None = None

    def close(self) -> None:
        """Stop every process this run started."""
        for peer in self.peers.values():
            procs.stop(peer.proc)
        for proc in self.procs:
            procs.stop(proc)

    # ---------------------------------------------------------------- setup
    def install_tools(self) -> dict[str, Path]:
        """Tools and venvs (may reach a package registry: run before entering the private namespace, where a
        second call finds everything installed)."""
        WORK.mkdir(exist_ok=True)
        wanted = set(self.args.only.split(",")) if self.args.only else {"direct", *TARGETS}
        self.wanted = wanted
        self.bin = tools.ensure_apt(["nginx", "hey", "curl"], log)
        try:
            self.bin.update(tools.ensure_apt(["hyperfine"], log))
        except tools.ToolMissing as exc:
            log(f"hyperfine unavailable ({exc}); CLI timings use a Python loop")
        venv_py: dict[str, Path] = {}
        for name, key in (("mitmproxy", "mitmproxy"), ("proxy.py", "proxypy")):
            if name in wanted:
                try:
                    venv_py[name] = tools.ensure_venv(WORK, key, log)
                except (subprocess.SubprocessError, OSError) as exc:
                    self.skipped[name] = f"could not install: {exc}"
        if self.args.profile:
            try:
                self.pyspy = tools.ensure_venv(WORK, "tools", log).parent / "py-spy"
            except (subprocess.SubprocessError, OSError) as exc:
                log(f"py-spy unavailable: {exc}")
                self.pyspy = None
        return venv_py

    def setup(self) -> None:
        """Tools, venvs, certificates, origins and the proxies."""
        venv_py = self.install_tools()
        wanted = self.wanted
        tools.compile_bytecode([Path(sys.executable), *venv_py.values()],
                               [ROOT / "src", *sorted((ROOT / "packages").glob("*/src"))], log)

        certs_dir = WORK / "certs"
        self.origin_ca = make_ca(certs_dir, "origin")
        names = [ROUTED, UNROUTED, *peers.unseen_hosts(self.unseen_total())]
        leaf = make_leaf(self.origin_ca, certs_dir, "origin-leaf", names, ["127.0.0.1"])
        self.nginx_port, self.sse_port = procs.free_port(), procs.free_port()
        self.procs.append(origins.start_nginx(self.bin["nginx"], WORK, self.nginx_port, leaf, self.secret,
                                              also=UNROUTED_ADDRESS))
        self.procs.append(origins.start_sse(WORK, self.sse_port, leaf, SSE_EVENTS, SSE_INTERVAL))
        procs.wait_port(self.nginx_port, self.procs[0], 15, "nginx")
        procs.wait_port(self.sse_port, self.procs[1], 15, "SSE origin")
        self.direct = Target("direct", None, str(self.origin_ca.cert))
        seen = clients.injection_seen(self.direct, ROUTED, self.nginx_port)
        if seen != "dummy":
            raise RuntimeError(f"the nginx origin does not check the Authorization header: {seen}")
        self.versions["nginx"] = tools.command_version([self.bin["nginx"], "-v"])
        self.versions["hey"] = "hey (Debian " + tools.command_version(
            ["dpkg-query", "-W", "-f=${Version}", "hey"]) + ")"

        starters = {
            "cordon": lambda port: peers.start_cordon(
                WORK, port, self.origin_ca, self.secret, [ROUTED, *peers.unseen_hosts(self.unseen_total())],
                self.proxy_core, {}),
            BARE: lambda port: peers.start_cordon(
                WORK, port, self.origin_ca, self.secret, [ROUTED, *peers.unseen_hosts(self.unseen_total())],
                self.proxy_core, {}, name=BARE, policy=False),
            "mitmproxy": lambda port: peers.start_mitmproxy(
                WORK, venv_py["mitmproxy"], port, self.origin_ca, self.secret, self.proxy_core),
            "proxy.py": lambda port: peers.start_proxypy(
                WORK, venv_py["proxy.py"], port, self.origin_ca, self.secret, self.proxy_core),
        }
        for name, start in starters.items():
            if name not in wanted or name in self.skipped:
                continue
            log(f"starting {name}")
            try:
                peer = start(procs.free_port())
            except (RuntimeError, OSError, subprocess.SubprocessError, KeyError) as exc:
                self.skipped[name] = f"did not start: {exc}"
                log(f"{name} did not start: {exc}")
                continue
            self.peers[name] = peer
            self.versions[name] = peer.version

    def unseen_total(self) -> int:
        """Distinct never-seen host names needed (each is new to every proxy once)."""
        return max(1, self.args.rounds * self.args.unseen)

    def verify_injection(self) -> None:
        """Rule 7: a proxy that does not inject the real secret is not timed."""
        time.sleep(1.0)
        for name, peer in list(self.peers.items()):
            problem = clients.check_injection(peer.target(), ROUTED, self.nginx_port)
            if problem:
                log(f"{name}: NOT timed: {problem}")
                self.skipped[name] = f"not timed: {problem}"
                procs.stop(peer.proc)
                del self.peers[name]
            else:
                log(f"{name}: injects the real secret (checked with GET /injected)")

    # ---------------------------------------------------------------- measurements
    def targets(self) -> list[Target]:
        """direct first, then the peers that passed the injection check."""
        out = [self.direct] if "direct" in self.wanted else []
        return out + [p.target() for p in self.peers.values()]

    def run(self) -> tuple[list[Metric], dict[str, dict[str, float]]]:
        """All rounds; returns the metrics and the memory figures."""
        a = self.args
        m = {
            "rps": Metric("rps", "keep-alive req/s, hey -c16", "req/s", True,
                          target="≥10× mitmproxy, ≥1.2× proxy.py",
                          check=lambda d: d["cordon"] >= 10 * d["mitmproxy"] and d["cordon"] >= 1.2 * d["proxy.py"]),
            "hey_p50": Metric("hey_p50", "hey latency p50", "ms", False),
            "hey_p99": Metric("hey_p99", "hey latency p99", "ms", False),
            "origin_conns": Metric("origin_conns", "origin TCP conns opened during that hey run", "", False),
            "hs": Metric("hs", "new conns/s, hey -c8 -disable-keepalive", "conn/s", True),
            "cpu": Metric("cpu", "proxy CPU per request (hey)", "ms", False, target="≤ 0.15",
                          check=lambda d: d["cordon"] <= 0.15),
            "warm_p50": Metric("warm_p50", "warm conn, per request p50", "ms", False),
            "warm_p99": Metric("warm_p99", "warm conn, per request p99", "ms", False),
            "warm_add50": Metric("warm_add50", "warm conn, added p50", "ms", False, target="≤ 0.3",
                                 check=lambda d: d["cordon"] <= 0.3),
            "warm_add99": Metric("warm_add99", "warm conn, added p99", "ms", False, target="< 5 (C.5)",
                                 check=lambda d: d["cordon"] < 5),
            "new_p50": Metric("new_p50", "new conn CONNECT+TLS+GET p50", "ms", False),
            "new_p99": Metric("new_p99", "new conn CONNECT+TLS+GET p99", "ms", False),
            "new_x": Metric("new_x", "new conn p50 ÷ direct", "×", False, target="≤ 2.5×",
                            check=lambda d: d["cordon"] <= 2.5),
            "new_tls": Metric("new_tls", "new conn: TLS handshake p50", "ms", False),
            "unseen": Metric("unseen", "first request, never-seen host p50", "ms", False),
            "unseen_tls": Metric("unseen_tls", "never-seen host: client TLS phase (leaf minted)", "ms", False),
            "unseen_req": Metric("unseen_req", "never-seen host: GET → response (upstream conn)", "ms", False),
            "unseen_add": Metric("unseen_add", "never-seen host, added vs direct new conn", "ms", False,
                                 target="< 15 (C.5)", check=lambda d: d["cordon"] < 15),
            "mb_routed": Metric("mb_routed", "/big 16 MiB, routed (MITM)", "MB/s", True),
            "mb_routed_x": Metric("mb_routed_x", "/big routed ÷ direct", "×", True, target="≥ 0.4×",
                                  check=lambda d: d["cordon"] >= 0.4),
            "mb_tunnel": Metric("mb_tunnel", "/big 16 MiB, unrouted (tunnel)", "MB/s", True,
                                target="≥ 200 (C.5)", check=lambda d: d["cordon"] >= 200),
            "sse_first": Metric("sse_first", "SSE time to first event", "ms", False),
            "sse_first_add": Metric("sse_first_add", "SSE first event, added", "ms", False, target="≤ 1",
                                    check=lambda d: d["cordon"] <= 1),
            "sse_ev_add50": Metric("sse_ev_add50", "SSE per-event delay added p50", "ms", False,
                                   target="< 1 (C.5)", check=lambda d: d["cordon"] < 1),
            "sse_ev_add99": Metric("sse_ev_add99", "SSE per-event delay added p99", "ms", False),
            "ab_cpu": Metric("ab_cpu", f"proxy CPU per request, both at {AB_CONNS * AB_RATE} req/s at once",
                             "ms", False),
            "ab_mb": Metric("ab_mb", "/big 16 MiB routed, both downloading at once", "MB/s", True),
        }
        targets = self.targets()
        self.warmup(targets)
        for rnd in range(a.rounds):
            order = targets[rnd % len(targets):] + targets[: rnd % len(targets)]
            log(f"round {rnd + 1}/{a.rounds}: order {', '.join(t.name for t in order)}")
            self.round_hey(order, m)
            self.round_warm(order, m)
            self.round_new(order, m, rnd)
            self.round_stream(order, m)
            self.round_sse(order, m)
            self.round_policy(m)
        memory = {}
        for name, peer in self.peers.items():
            rss, hwm = procs.memory_mib(peer.proc.pid)
            memory[name] = {"idle": self.idle_rss[name], "after": rss, "peak": hwm}
        for name, peer in self.peers.items():
            memory[name].update(self.idle_connections(peer))
        return list(m.values()), memory

    def idle_connections(self, peer: peers.Peer) -> dict[str, float]:
        """KiB of proxy RSS per idle kept-alive MITM'd connection (IDLE_CONNS of them, one request each)."""
        ctx = clients.client_context(peer.ca_file)
        before = procs.memory_mib(peer.proc.pid)[0]
        conns: list[clients.Connection] = []
        try:
            for _ in range(IDLE_CONNS):
                conn = clients.Connection(peer.target(), ROUTED, self.nginx_port, ctx)
                conns.append(conn)
                conn.get("/small")
            time.sleep(0.5)
            after = procs.memory_mib(peer.proc.pid)[0]
        except (OSError, clients.HTTPError) as exc:
            log(f"  {peer.name}: idle connections failed after {len(conns)}: {exc}")
            return {}
        finally:
            for conn in conns:
                conn.close()
        log(f"  {peer.name}: {IDLE_CONNS} idle connections: RSS {before:.1f} -> {after:.1f} MiB")
        return {"with_idle": after, "per_idle_conn": (after - before) * 1024 / IDLE_CONNS}

    def fair_share(self) -> list[dict[str, object]]:
        """A token holder's new CONNECT + TLS + GET /small (p50, max) against a cordon with proxy tokens on, with
        no flood, then while ``--flood`` unauthenticated connections stay open (idle, then each looping
        ``GET /health``; the flood reopens whatever the proxy closes). The flood is a separate process on the
        load core."""
        port = procs.free_port()
        log(f"fair share: starting cordon with proxy tokens on ({self.args.flood} flood connections)")
        peer = peers.start_cordon(WORK, port, self.origin_ca, self.secret, [ROUTED], self.proxy_core, {},
                                  name="cordon-tokens", token="bench")
        self.procs.append(peer.proc)
        target = peer.target()
        ctx = clients.client_context(target.ca_file)
        samples = 20 if self.args.quick else 100
        rows: list[dict[str, object]] = []
        for mode in ("none", "idle", "health"):
            flood = None
            note = ""
            if mode != "none":
                flood = subprocess.Popen(
                    [sys.executable, str(BENCH / "cordonbench" / "flood.py"), "--port", str(port), "--conns",
                     str(self.args.flood), "--mode", mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                assert flood.stdout is not None
                ready = flood.stdout.readline().strip()
                if not ready.startswith("ready"):
                    procs.stop(flood)
                    raise RuntimeError(f"the flood did not start: {ready or flood.stderr.read() if flood.stderr else ''}")
                time.sleep(FIRST_HEAD_TIMEOUT * 1.5)  # past the first-head deadline: churn at steady state
            times: list[float] = []
            failures = 0
            for _ in range(samples):
                t0 = time.perf_counter()
                try:
                    with clients.Connection(target, ROUTED, self.nginx_port, ctx) as conn:
                        status, _ = conn.get("/small")
                    if status != 200:
                        raise clients.HTTPError(f"status {status}")
                    times.append((time.perf_counter() - t0) * 1e3)
                except (OSError, clients.HTTPError):
                    failures += 1
            if flood is not None:
                flood.terminate()
                out, _ = flood.communicate(timeout=30)
                note = out.strip().splitlines()[-1] if out.strip() else ""
            row = {"flood": mode, "p50": percentile(times, 50) if times else None,
                   "max": max(times) if times else None, "failures": failures, "samples": samples, "note": note}
            rows.append(row)
            log(f"  fair share, flood={mode}: p50 {row['p50'] or 0:.2f} ms, max {row['max'] or 0:.2f} ms, "
                f"{failures}/{samples} failed {note}")
        procs.stop(peer.proc)
        return rows

    def warmup(self, targets: list[Target]) -> None:
        """≥2 s of keep-alive load on each target before the first round; records idle RSS first."""
        self.idle_rss = {name: procs.memory_mib(p.proc.pid)[0] for name, p in self.peers.items()}
        secs = 1.0 if self.args.quick else 2.0
        for t in targets:
            self.hey(t, secs, conns=16)

    def settle(self, limit: float = 5.0) -> None:
        """Wait (≤ ``limit`` s) until no proxy burns CPU, so leftovers of one run do not load the next."""
        pids = [p.proc.pid for p in self.peers.values()]
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            before = sum(procs.cpu_seconds(pid) for pid in pids)
            time.sleep(0.2)
            if sum(procs.cpu_seconds(pid) for pid in pids) - before < 0.011:
                return

    def hey(self, t: Target, seconds: float, conns: int, keepalive: bool = True) -> loadgen.HeyResult:
        """hey against ``/small`` of the routed host for ``t`` (after the proxies have settled)."""
        self.settle()
        if t.proxy is None:
            return loadgen.run_hey(self.bin["hey"], f"https://127.0.0.1:{self.nginx_port}/small", proxy_port=None,
                                   host_header=ROUTED, conns=conns, seconds=seconds,
                                   disable_keepalive=not keepalive)
        # -host: hey otherwise sends "bench.test:PORT" as the TLS SNI (its ServerName is the Host header),
        # which cordon refuses by design (SNI must equal the CONNECT host); same flag for every proxy.
        return loadgen.run_hey(self.bin["hey"], f"https://{ROUTED}:{self.nginx_port}/small", proxy_port=t.proxy[1],
                               host_header=ROUTED, conns=conns, seconds=seconds, disable_keepalive=not keepalive)

    def round_hey(self, order: list[Target], m: dict[str, Metric]) -> None:
        """(1) keep-alive req/s and latency, (6) proxy CPU per request; plus the new-connection rate."""
        for t in order:
            pid = self.peers[t.name].proc.pid if t.proxy else None
            self.settle()
            acc0 = clients.origin_accepts(self.direct, ROUTED, self.nginx_port)
            cpu0 = procs.cpu_seconds(pid) if pid else 0.0
            res = self.hey(t, self.args.duration, conns=16)
            cpu1 = procs.cpu_seconds(pid) if pid else 0.0
            # -1: the stub_status request itself
            m["origin_conns"].add(t.name, clients.origin_accepts(self.direct, ROUTED, self.nginx_port) - acc0 - 1)
            if not res.ok:
                log(f"  hey {t.name}: no successful response ({res.errors} errors); run hey by hand to see why")
                continue
            m["rps"].add(t.name, res.ok_rps)
            m["hey_p50"].add(t.name, res.p50 * 1e3)
            m["hey_p99"].add(t.name, res.p99 * 1e3)
            if pid:
                m["cpu"].add(t.name, (cpu1 - cpu0) * 1e3 / res.ok)
            note = f", {res.errors} errors (not counted)" if res.errors else ""
            log(f"  hey {t.name}: {res.ok_rps:,.0f} req/s p50 {res.p50 * 1e3:.2f} ms p99 {res.p99 * 1e3:.2f} ms{note}")
            hs = self.hey(t, max(2.0, self.args.duration / 2), conns=8, keepalive=False)
            m["hs"].add(t.name, hs.ok_rps)
            log(f"  hey -disable-keepalive {t.name}: {hs.ok_rps:,.0f} conn/s")

    def round_warm(self, order: list[Target], m: dict[str, Metric]) -> None:
        """(2) sequential requests on one warm connection; added = target − direct of the same round."""
        self.settle()
        res = {}
        for t in order:
            lat = clients.warm_latencies(t, ROUTED, self.nginx_port, self.args.warm_requests)
            res[t.name] = (percentile(lat, 50) * 1e3, percentile(lat, 99) * 1e3)
            m["warm_p50"].add(t.name, res[t.name][0])
            m["warm_p99"].add(t.name, res[t.name][1])
        if "direct" in res:
            for name, (p50, p99) in res.items():
                if name != "direct":
                    m["warm_add50"].add(name, p50 - res["direct"][0])
                    m["warm_add99"].add(name, p99 - res["direct"][1])
        log("  warm p50 " + ", ".join(f"{k} {v[0]:.3f} ms" for k, v in res.items()))

    def round_new(self, order: list[Target], m: dict[str, Metric], rnd: int) -> None:
        """(3) new connections with a warm leaf cache, and first requests to never-seen hosts."""
        self.settle()
        res = {}
        for t in order:
            runs = clients.new_connections(t, ROUTED, self.nginx_port, self.args.new_conns)
            totals = [r["total"] * 1e3 for r in runs]
            res[t.name] = percentile(totals, 50)
            m["new_p50"].add(t.name, res[t.name])
            m["new_p99"].add(t.name, percentile(totals, 99))
            m["new_tls"].add(t.name, percentile([r["tls"] * 1e3 for r in runs], 50))
        unseen = peers.unseen_hosts(self.unseen_total())[rnd * self.args.unseen:(rnd + 1) * self.args.unseen]
        first = {}
        for t in order:
            runs = []
            for host in unseen:
                ctx = clients.client_context(t.ca_file)
                runs.append(clients.new_connection(t, host, self.nginx_port, ctx))
            first[t.name] = median([r["total"] * 1e3 for r in runs])
            m["unseen"].add(t.name, first[t.name])
            m["unseen_tls"].add(t.name, median([r["tls"] * 1e3 for r in runs]))
            m["unseen_req"].add(t.name, median([r["request"] * 1e3 for r in runs]))
        if "direct" in res:
            for name in res:
                m["new_x"].add(name, res[name] / res["direct"])
                m["unseen_add"].add(name, first[name] - res["direct"]) if name != "direct" else None
        log("  new conn p50 " + ", ".join(f"{k} {v:.2f} ms" for k, v in res.items())
            + " | never-seen " + ", ".join(f"{k} {v:.1f} ms" for k, v in first.items()))

    def round_stream(self, order: list[Target], m: dict[str, Metric]) -> None:
        """(4) MB/s of /big through a routed (MITM) host and an unrouted (tunnelled) host."""
        self.settle()
        direct = None
        got = {}
        for t in order:
            for host, key in ((ROUTED, "mb_routed"), (UNROUTED, "mb_tunnel")):
                if t.proxy is None and host == UNROUTED:
                    continue
                speeds = []
                t0 = time.monotonic()
                try:
                    for _ in range(self.args.downloads):
                        speeds.append(self.download(t, host) / 1e6)
                        if time.monotonic() - t0 > 4:  # a slow peer: one or two downloads are enough
                            break
                except RuntimeError as exc:
                    log(f"  /big via {t.name} to {host}: failed: {str(exc)[:160]}")
                    continue
                m[key].add(t.name, median(speeds))
                got[(t.name, key)] = median(speeds)
                if t.proxy is None:
                    direct = median(speeds)
                    m["mb_tunnel"].add(t.name, direct)
        if direct:
            for (name, key), v in got.items():
                if key == "mb_routed":
                    m["mb_routed_x"].add(name, v / direct)
        log("  /big MB/s " + ", ".join(f"{k[0]}:{'mitm' if k[1] == 'mb_routed' else 'tunnel'} {v:.0f}"
                                      for k, v in got.items()))

    def round_policy(self, m: dict[str, Metric]) -> None:
        """cordon against cordon-bare loaded at the same moment (the same machine conditions for both, which a
        shared machine cannot give two runs one after the other): hey at a fixed rate through each, CPU per
        request; then /big through both at once, MB/s."""
        pair = [self.peers.get(name) for name in ("cordon", BARE)]
        if None in pair:
            return
        self.settle()
        url = f"https://{ROUTED}:{self.nginx_port}/small"
        cpu0 = {p.name: procs.cpu_seconds(p.proc.pid) for p in pair if p}
        runs = {p.name: loadgen.start_hey(self.bin["hey"], url, proxy_port=p.port, host_header=ROUTED,
                                          conns=AB_CONNS, seconds=self.args.duration, rate=AB_RATE)
                for p in pair if p}
        results = {name: loadgen.parse_hey(proc.communicate(timeout=self.args.duration + 60)[0])
                   for name, proc in runs.items()}
        for p in pair:
            assert p is not None
            res = results[p.name]
            if res.ok:
                m["ab_cpu"].add(p.name, (procs.cpu_seconds(p.proc.pid) - cpu0[p.name]) * 1e3 / res.ok)
        self.settle()
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            speeds = dict(zip([p.name for p in pair if p], pool.map(
                lambda p: self.download(p.target(), ROUTED) / 1e6, [p for p in pair if p]), strict=True))
        for name, speed in speeds.items():
            m["ab_mb"].add(name, speed)
        cpu = m["ab_cpu"].values
        log("  at once: CPU/request " + ", ".join(f"{name} {cpu[name][-1]:.3f} ms" for name in cpu)
            + " | /big " + ", ".join(f"{name} {speed:.0f} MB/s" for name, speed in speeds.items()))

    def download(self, t: Target, host: str) -> float:
        """Bytes/s of one curl download of /big."""
        url = f"https://{host}:{self.nginx_port}/big"
        if t.proxy is None:
            return loadgen.run_curl_download(url, proxy_port=None, cacert=t.ca_file,
                                             resolve=f"{host}:{self.nginx_port}:127.0.0.1")
        cacert = t.ca_file if host == ROUTED else str(self.origin_ca.cert)
        return loadgen.run_curl_download(url, proxy_port=t.proxy[1], cacert=cacert, resolve=None)

    def round_sse(self, order: list[Target], m: dict[str, Metric]) -> None:
        """(5) SSE: time to first event and per-event delay (arrival − embedded timestamp)."""
        self.settle()
        res = {}
        for t in order:
            firsts, delays = [], []
            for _ in range(self.args.sse_runs):
                try:
                    r = clients.sse_run(t, ROUTED, self.sse_port, SSE_EVENTS)
                except (OSError, clients.HTTPError) as exc:
                    log(f"  SSE via {t.name} failed: {exc}")
                    break
                firsts.append(r.first_event * 1e3)
                delays += [d * 1e3 for d in r.delays]
            if firsts:
                res[t.name] = (median(firsts), percentile(delays, 50), percentile(delays, 99))
                m["sse_first"].add(t.name, res[t.name][0])
        if "direct" in res:
            d = res["direct"]
            for name, v in res.items():
                if name != "direct":
                    m["sse_first_add"].add(name, v[0] - d[0])
                    m["sse_ev_add50"].add(name, v[1] - d[1])
                    m["sse_ev_add99"].add(name, v[2] - d[2])
        log("  SSE first event " + ", ".join(f"{k} {v[0]:.2f} ms" for k, v in res.items()))

    # ---------------------------------------------------------------- extras
    def profile_cordon(self) -> str | None:
        """py-spy (native-less, 250 Hz) of cordon under hey; returns a top-functions summary."""
        peer = self.peers.get("cordon")
        if peer is None or self.pyspy is None:
            return None
        out = WORK / "profile"
        out.mkdir(exist_ok=True)
        raw = out / "cordon-hey.txt"
        secs = 8 if not self.args.quick else 3
        spy = subprocess.Popen([str(self.pyspy), "record", "--pid", str(peer.proc.pid), "--format", "raw",
                                "--rate", "250", "--duration", str(secs), "--output", str(raw), "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)
        self.hey(peer.target(), secs, conns=16)
        try:
            spy.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            procs.stop(spy)
        if not raw.exists():
            return None
        return summarize_collapsed(raw.read_text())

    def cli_timings(self) -> dict[str, tuple[float, float]] | None:
        """Wall time (mean, stddev in ms) of ``python -c pass``, ``cordon --help``, ``cordon env`` and
        ``cordon status``."""
        venv_bin = Path(sys.executable).parent
        cordon = venv_bin / "cordon"
        if not cordon.exists():
            return None
        toml = WORK / "cordon" / "cordon.toml"
        home = WORK / "cordon" / "home"
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
        # the scope's state dir, as `cordon setup` leaves it (the bench writes cordon.toml itself): `cordon env`
        # keeps its cache there, so the timed runs after hyperfine's warm-up are what a set-up user sees
        from cordon_config.scope import resolve_scope

        paths = resolve_scope(None, toml, env=env, cwd=Path.cwd())
        paths.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        from cordon_config.tokens import TokenStore

        TokenStore.open(paths.tokens_path).ensure("default")  # the proxy URL's token, as setup leaves it
        # `cordon env` caches nothing about a file changed in the last 2 s (envfast.RACY_SECONDS): a user's
        # tokens.toml is older than that, so wait it out rather than time the first, uncached calls
        changed = max(toml.stat().st_ctime, paths.tokens_path.stat().st_ctime)
        time.sleep(max(0.0, changed + 2.1 - time.time()))
        cmds = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "cordon --help": [str(cordon), "--help"],
            "cordon env": [str(cordon), "env", "-c", str(toml)],
            "cordon status": [str(cordon), "status", "-c", str(toml)],  # the proxy is stopped by now: exit 1
        }
        self.cli_notes = []
        for name, argv in list(cmds.items()):
            rc = subprocess.run(argv, env=env, capture_output=True, timeout=30).returncode
            if rc != 0 and name != "cordon status":
                self.cli_notes.append(f"`{name}` exited {rc}: timed anyway")
        if "hyperfine" in self.bin:
            out = WORK / "hyperfine.json"
            argv = [self.bin["hyperfine"], "-N", "--warmup", "3", "--runs", "10" if self.args.quick else "30",
                    "-i", "--export-json", str(out)]
            for name, cmd in cmds.items():
                argv += ["-n", name, shlex.join(cmd)]
            subprocess.run(argv, env=env, capture_output=True, timeout=300)
            data = json.loads(out.read_text())
            return {r["command"]: (r["mean"] * 1e3, r["stddev"] * 1e3) for r in data["results"]}
        result = {}
        for name, cmd in cmds.items():
            times = []
            for _ in range(10 if self.args.quick else 30):
                t0 = time.perf_counter()
                subprocess.run(cmd, env=env, capture_output=True, timeout=30)
                times.append((time.perf_counter() - t0) * 1e3)
            result[name] = (median(times), percentile(times, 90) - median(times))
        return result


def summarize_collapsed(text: str, top: int = 25) -> str:
    """Top functions by own samples and by inclusive samples from py-spy's raw (collapsed) output."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    if not total:
        return "no samples"
    lines = [f"{total} samples", "", "own samples (top):"]
    for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100 * n / total:5.1f}%  {f}")
    by_file: dict[str, int] = {}
    for f, n in own.items():
        where = f.rsplit("(", 1)[-1].split(":", 1)[0] if "(" in f else f
        by_file[where] = by_file.get(where, 0) + n
    lines += ["", "own samples by file (top):"]
    for f, n in sorted(by_file.items(), key=lambda kv: -kv[1])[:12]:
        lines.append(f"  {100 * n / total:5.1f}%  {f}")
    lines += ["", "inclusive samples (top, cordon_proxy frames):"]
    shown = 0
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1]):
        if "cordon" in f:
            lines.append(f"  {100 * n / total:5.1f}%  {f}")
            shown += 1
            if shown >= top:
                break
    return "\n".join(lines)


def fairness_notes(metrics: list[Metric]) -> list[str]:
    """Caveats worth reading next to the table (some derived from the figures themselves)."""
    notes = [
        "- hey copies the Host header into the TLS SNI (`bench.test:PORT` when the URL has a port); cordon "
        "refuses an SNI that is not the CONNECT host, so every proxied hey run uses `-host bench.test`.",
        "- mitmproxy runs with its defaults, which buffer whole responses (`stream_large_bodies` unset): "
        "hence its SSE and routed-download figures.",
    ]
    conns = next((m for m in metrics if m.key == "origin_conns"), None)
    for name in ("cordon", "mitmproxy", "proxy.py"):
        n = conns.med(name) if conns else None
        if n is not None and n > 64:
            notes.append(f"- During the keep-alive hey runs nginx accepted {n:,.0f} connections from {name} "
                         "(16 expected): connections were re-opened, so its keep-alive figures include "
                         "new-connection (TLS handshake) costs.")
    return notes


def machine_info() -> dict[str, str]:
    """CPU, governor, kernel, Python and OpenSSL versions."""
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gov = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} CPUs",
        "governor": gov.read_text().strip() if gov.exists() else "n/a (VM)",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "openssl (ssl module)": ssl.OPENSSL_VERSION,
    }


def policy_section(metrics: list[Metric]) -> str:
    """What response scrubbing and the audit log cost: cordon (both on, the default) against cordon-bare
    (both off) in the same rounds, against POLICY_CPU_GOAL. The change is the median over rounds of each
    round's on ÷ off (paired: the two were measured in the same minute), not the ratio of two medians."""
    by_key = {m.key: m for m in metrics}
    rows = ["Cost of response scrubbing and the audit log (cordon, both on by default, against cordon-bare, "
            "both off). The first two rows load both proxies at the same moment (the comparison that holds on "
            "a shared machine); the last two are the sequential figures of the main table. `on vs off` is the "
            "median of the per-round ratios:", "",
            "| figure | cordon | cordon-bare | on vs off (rounds) | goal | met |", "|---|---|---|---|---|---|"]
    measured = False
    for key, goal, limit in (("ab_cpu", f"≤ +{POLICY_CPU_GOAL:.0%} CPU per request", POLICY_CPU_GOAL),
                             ("ab_mb", f"within {POLICY_STREAM_GOAL:.0%}", POLICY_STREAM_GOAL),
                             ("cpu", f"≤ +{POLICY_CPU_GOAL:.0%} CPU per request", POLICY_CPU_GOAL),
                             ("mb_routed", f"within {POLICY_STREAM_GOAL:.0%}", POLICY_STREAM_GOAL)):
        metric = by_key.get(key)
        if metric is None:
            continue
        on, off = metric.values.get("cordon", []), metric.values.get(BARE, [])
        pairs = [a / b - 1 for a, b in zip(on, off, strict=False) if b]
        if not pairs:
            continue
        measured = True
        change = median(pairs)  # CPU: more is worse; MB/s: less is worse
        cost = change if key in ("cpu", "ab_cpu") else -change
        met = "yes" if cost <= limit else "**no**"
        spread = ", ".join(f"{x:+.0%}" for x in pairs)
        rows.append(f"| {metric.label} ({metric.unit}) | {fmt_num(median(on))} | {fmt_num(median(off))} | "
                    f"{change:+.1%} ({spread}) | {goal} | {met} |")
    if not measured:
        return "Cost of response scrubbing and the audit log: not measured (run with cordon and cordon-bare)."
    return "\n".join(rows)


def memory_rows(memory: dict[str, dict[str, float]]) -> list[Metric]:
    """RSS rows as metrics (one round each), so they share the table."""
    idle = Metric("rss_idle", "RSS idle", "MiB", False, target="≤ 40", check=lambda d: d["cordon"] <= 40)
    after = Metric("rss_after", "RSS after load", "MiB", False)
    peak = Metric("rss_peak", "peak RSS (VmHWM) before the idle-conn test", "MiB", False, target="≤ 80",
                  check=lambda d: d["cordon"] <= 80)
    with_idle = Metric("rss_conns", f"RSS with {IDLE_CONNS} idle MITM'd conns", "MiB", False,
                       target="< 60 (C.5)", check=lambda d: d["cordon"] < 60)
    per = Metric("per_conn", "RSS per idle MITM'd conn", "KiB", False)
    for name, v in memory.items():
        idle.add(name, v["idle"])
        after.add(name, v["after"])
        peak.add(name, v["peak"])
        with_idle.add(name, v.get("with_idle"))
        per.add(name, v.get("per_idle_conn"))
    return [idle, after, peak, with_idle, per]


def cli_section(timings: dict[str, tuple[float, float]] | None, notes: list[str]) -> tuple[str, list[str]]:
    """Markdown lines for the CLI wall times, and target verdict lines."""
    if not timings:
        return "CLI timings: not measured (`--no-cli`, or no `cordon` script next to this interpreter).", []
    base = timings.get("python -c pass", (0.0, 0.0))[0]
    rows = ["| command | mean ms | ± | ÷ `python -c pass` | target ≤ 2× |", "|---|---|---|---|---|"]
    verdicts = []
    for name, (mean, sd) in timings.items():
        x = mean / base if base else float("nan")
        met = "—" if name == "python -c pass" else ("yes" if x <= 2 else "**no**")
        rows.append(f"| `{name}` | {mean:.1f} | {sd:.1f} | {x:.2f}× | {met} |")
        if name != "python -c pass":
            verdicts.append(f"`{name}` {x:.2f}× python -c pass: {'met' if x <= 2 else 'NOT met'}")
    return "\n".join(rows + [""] + [f"- {n}" for n in notes]), verdicts


def names(args: argparse.Namespace) -> dict[str, str]:
    """The hosts file of the bench's namespace: the routed names on loopback, the unrouted one on an address
    cordon's SSRF policy allows (the other proxies resolve .test names themselves, to 127.0.0.1)."""
    rounds, unseen = (1, min(args.unseen, 2)) if args.quick else (args.rounds, args.unseen)
    table = {host: "127.0.0.1" for host in [ROUTED, *peers.unseen_hosts(max(1, rounds * unseen))]}
    table[UNROUTED] = UNROUTED_ADDRESS
    return table


def run_inside_namespace(args: argparse.Namespace, argv: list[str]) -> int:
    """Install what needs a registry, then run this bench again in a private network namespace of its own:
    loopback only (plus one address on ``lo`` that is not loopback, where the unrouted host lives), and a
    hosts file for the .test names. No product switch is involved and nothing can leave the machine."""
    cores = os.sched_getaffinity(0)
    bench = Bench(args)  # pins this process to the load core
    try:
        bench.install_tools()
    except (tools.ToolMissing, OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    WORK.mkdir(exist_ok=True)
    try:
        inner = private_argv([sys.executable, str(Path(__file__).resolve()), *argv], names(args), WORK / "hosts")
    except RuntimeError as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    os.sched_setaffinity(0, cores)  # the run inside must see every core to pin the proxy apart from the load
    return subprocess.call(inner, env={**os.environ, INSIDE_ENV: "1"})


def fair_share_section(rows: list[dict[str, object]], flood: int, command: str) -> str:
    """Markdown for the fair-share figure."""
    labels = {"none": "no flood", "idle": f"{flood:,} idle unauthenticated connections",
              "health": f"{flood:,} unauthenticated connections looping GET /health"}
    lines = [
        "## Fair share of connections (bench/run.py --fair-share)",
        "",
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC with `{command}`. cordon with proxy tokens on and its "
        "default limits (`max_unauthenticated = 256`, `first_head_timeout = 5`); a token holder opens a new "
        "connection, CONNECTs to the routed host and sends GET /small, one after the other, while a separate "
        "process keeps the flood open (reopening whatever the proxy closes). Proxy on core 0, everything else "
        "on core 1.",
        "",
        "| flood | token holder's new conn p50 (ms) | max (ms) | failed | flood process |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        p50, top = row["p50"], row["max"]
        lines.append(f"| {labels[str(row['flood'])]} | {p50:.2f} | {top:.2f} | {row['failures']}/{row['samples']} | "
                     f"{row['note'] or '—'} |" if p50 is not None and top is not None else
                     f"| {labels[str(row['flood'])]} | — | — | {row['failures']}/{row['samples']} | {row['note']} |")
    return "\n".join(lines)


def main_fair_share(args: argparse.Namespace, command: str) -> int:
    """``--fair-share``: nginx, one cordon with tokens, the flood; prints (and writes) the fair-share section."""
    bench = Bench(args)
    try:
        bench.install_tools()
        certs_dir = WORK / "certs"
        bench.origin_ca = make_ca(certs_dir, "origin")
        leaf = make_leaf(bench.origin_ca, certs_dir, "origin-leaf", [ROUTED, UNROUTED], ["127.0.0.1"])
        bench.nginx_port = procs.free_port()
        bench.procs.append(origins.start_nginx(bench.bin["nginx"], WORK, bench.nginx_port, leaf))
        procs.wait_port(bench.nginx_port, bench.procs[0], 15, "nginx")
        rows = bench.fair_share()
    except (RuntimeError, tools.ToolMissing, OSError, subprocess.SubprocessError) as exc:
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    finally:
        bench.close()
    section = fair_share_section(rows, args.flood, command)
    print(section)
    if not (args.quick or args.no_write):
        existing = args.out.read_text() if args.out.exists() else ""
        args.out.write_text(replace_section(existing, section, FAIR_BEGIN, FAIR_END))
        log(f"wrote {args.out}")
    return 0 if all(row["failures"] == 0 for row in rows) else 1


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; print the table; write bench/RESULTS.md unless --quick/--no-write."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.fair_share:
        args.only, args.profile = "cordon", False  # nginx, hey/curl and cordon are all it needs
    if os.environ.get(INSIDE_ENV) != "1":
        return run_inside_namespace(args, raw)
    if args.fair_share:
        return main_fair_share(args, "uv run python bench/run.py " + shlex.join(raw))
    if args.quick:
        args.rounds, args.duration = min(args.rounds, 1), min(args.duration, 2.0)
        args.warm_requests, args.new_conns = min(args.warm_requests, 200), min(args.new_conns, 50)
        args.unseen, args.downloads, args.sse_runs = min(args.unseen, 2), 1, 1
        args.profile = False
    command = "uv run python bench/run.py" + ("" if argv is None and len(sys.argv) < 2 else " " + shlex.join(
        sys.argv[1:] if argv is None else argv))
    started = dt.datetime.now(dt.UTC)
    bench = Bench(args)
    try:
        bench.setup()
    except (RuntimeError, tools.ToolMissing, OSError, subprocess.SubprocessError) as exc:
        bench.close()
        sys.stderr.write(f"bench: {exc}\n")
        return 1
    try:
        bench.verify_injection()
        if len(bench.targets()) < 1:
            log("nothing to measure")
            return 1
        metrics, memory = bench.run()
        metrics += memory_rows(memory)
        profile = bench.profile_cordon() if args.profile else None
        timings = None if args.no_cli else bench.cli_timings()
        fair = bench.fair_share() if "cordon" in bench.peers else []
    finally:
        bench.close()
    names = [t for t in ("direct", *TARGETS) if (t == "direct" and "direct" in bench.wanted) or t in bench.peers]
    summary = summary_table(metrics, names)
    detail = detail_table(metrics, names)
    cli_md, _ = cli_section(timings, getattr(bench, "cli_notes", []))
    policy_md = policy_section(metrics)
    elapsed = time.monotonic() - START
    print(summary)
    print()
    print(policy_md)
    print()
    print(cli_md)
    for name, why in bench.skipped.items():
        print(f"- {name}: {why}")
    if profile:
        (WORK / "profile" / "summary.txt").write_text(profile)
        print("\nprofile of cordon under hey (bench/.work/profile/summary.txt):\n" + profile)
    log(f"done in {elapsed:.0f} s")
    if fair:
        print("\n" + fair_share_section(fair, args.flood, command))
    if args.quick or args.no_write:
        return 0
    info = machine_info()
    lines = [
        "## Proxy benchmark: direct vs cordon vs mitmproxy vs proxy.py (bench/run.py)",
        "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s, with `{command}`.",
        f"{args.rounds} interleaved rounds (target order rotated each round), hey runs of {args.duration:g} s, "
        f"{args.warm_requests} warm requests, {args.new_conns} new connections, {args.unseen} never-seen hosts, "
        f"{args.downloads} downloads per host and {args.sse_runs} SSE streams ({SSE_EVENTS} events, "
        f"{SSE_INTERVAL * 1e3:.0f} ms apart) per round and target. Figures are medians over rounds; "
        "`cordon vs X` is how many times better cordon is (>1× = cordon better; — where a ratio is "
        "meaningless, e.g. an added latency ≤ 0). Proxy on core 0, origins + clients + load tools on core 1.",
        "",
        summary,
        "",
        policy_md,
        "",
        "Median [min–max] over rounds:",
        "",
        detail,
        "",
        "CLI start-up (wall time, hyperfine -N):",
        "",
        cli_md,
        "",
        "Notes:",
        "",
        *fairness_notes(metrics),
        "",
        "Machine and versions:",
        "",
        *[f"- {k}: {v}" for k, v in info.items()],
        *[f"- {k}: {v}" for k, v in bench.versions.items()],
        *[f"- {p.name}: {n}" for p in bench.peers.values() for n in p.notes],
        *[f"- {name}: {why}" for name, why in bench.skipped.items()],
    ]
    if profile:
        lines += ["", "py-spy of cordon under `hey -c 16` (top):", "", "```", profile, "```"]
    out = args.out
    existing = out.read_text() if out.exists() else ""
    updated = replace_section(existing, "\n".join(lines))
    if fair:
        updated = replace_section(updated, fair_share_section(fair, args.flood, command), FAIR_BEGIN, FAIR_END)
    out.write_text(updated)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
