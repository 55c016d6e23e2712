"""Quick loopback benchmark of cordon-proxy (not a test): latency added per request, SSE delay, streaming.

Run from the repo root:  uv run python bench/bench_proxy_quick.py [--big-mib 1024] [--requests 500]

Everything stays on 127.0.0.1: a threaded Python TLS upstream (cordon_testing.proxy.RecordingUpstream) with a
trustme certificate, the real proxy as a subprocess (``python -m cordon_proxy start``), ``api.test`` resolved by
the proxy's test-only override. Measures:

0. (with ``hey`` installed) keep-alive requests/s at concurrency 16, direct vs proxied, and new MITM'd
   connections per second (``-disable-keepalive``, warm leaf cache);
1. added latency, warm keep-alive: p50/p99 of (proxied - direct) per-request time, http.client, same upstream;
2. first request to a host: CONNECT + MITM handshake + upstream handshake + request (fresh connection each);
3. SSE: per-event (arrival - upstream send time) through the proxy vs direct, p50/p99, and first-event delay;
4. memory per idle MITM'd keep-alive connection (RSS delta over ``--idle`` connections);
5. streaming: one large response (default 1 GiB) through the proxy with curl, MB/s, and the proxy's RSS
   sampled every 100 ms from /proc/<pid>/status (flat RSS = constant memory).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from cordon_testing.proxy import (
    ProxyProcess,
    RecordingUpstream,
    RouteSpec,
    free_port,
    sse,
    stream,
    write_config,
)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def timed_requests(conn: http.client.HTTPSConnection, n: int) -> list[float]:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        conn.request("GET", "/small", headers={"Authorization": "Bearer dummy"})
        response = conn.getresponse()
        response.read()
        times.append(time.perf_counter() - start)
    return times


def direct_conn(port: int, upstream_ca: Path) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(upstream_ca))
    ctx.check_hostname = False
    return http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=30)


def proxied_conn(proxy_port: int, port: int, cordon_ca: Path) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=ctx, timeout=30)
    conn.set_tunnel("api.test", port)
    return conn


def sse_delays(conn: http.client.HTTPSConnection) -> list[float]:
    conn.request("POST", "/sse", body=b"{}", headers={"Content-Type": "application/json"})
    response = conn.getresponse()
    delays = []
    buffer = b""
    while True:
        data = response.read1(65536)
        if not data:
            break
        now = time.time()
        buffer += data
        while b"\n\n" in buffer:
            event, buffer = buffer.split(b"\n\n", 1)
            if event.startswith(b"data: {"):
                delays.append(now - json.loads(event[6:])["sent"])
    return delays


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--big-mib", type=int, default=1024, help="size of the streamed response (MiB)")
    parser.add_argument("--requests", type=int, default=500, help="requests per latency run")
    parser.add_argument("--events", type=int, default=100, help="SSE events (10 ms apart)")
    parser.add_argument("--idle", type=int, default=200, help="idle MITM'd connections for the memory figure")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="cordon-bench-"))
    report: dict[str, object] = {
        "python": sys.version.split()[0], "openssl": ssl.OPENSSL_VERSION, "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    with RecordingUpstream() as up:
        up.handlers["/small"] = lambda h, seen: (h.send_response(200), h.send_header("Content-Length", "100"),
                                                 h.end_headers(), h.wfile.write(b"x" * 100))
        up.handlers["/sse"] = sse(args.events, 0.01)
        up.handlers["/big"] = stream(args.big_mib << 20, 1 << 18)
        upstream_ca = up.write_ca(tmp / "up.pem")
        port = free_port()
        config = write_config(tmp, port, [RouteSpec("api", "api.test", "BENCH_SECRET")], upstream_ca_file=upstream_ca,
                              secret_ttl=10)
        proxy = ProxyProcess(config, port, env=dict(os.environ, BENCH_SECRET="sk-bench-secret"),
                             args=("--log-level", "warn")).start()
        cordon_ca = tmp / "state" / "certs" / "ca-cert.pem"
        try:
            assert proxy.proc is not None
            pid = proxy.proc.pid
            report["loop"] = "uvloop" if _has_uvloop() else "asyncio"
            # 1. warm latency, interleaved direct/proxied runs
            direct, proxied = [], []
            d, p = direct_conn(up.port, upstream_ca), proxied_conn(port, up.port, cordon_ca)
            timed_requests(d, 50)
            timed_requests(p, 50)  # warm-up
            cpu = 0.0
            for _ in range(4):
                direct += timed_requests(d, args.requests // 4)
                before_cpu = cpu_seconds(pid)
                proxied += timed_requests(p, args.requests // 4)
                cpu += cpu_seconds(pid) - before_cpu
            d.close()
            p.close()
            report["latency_ms"] = {
                "direct_p50": round(pct(direct, 0.5) * 1e3, 3), "direct_p99": round(pct(direct, 0.99) * 1e3, 3),
                "proxied_p50": round(pct(proxied, 0.5) * 1e3, 3), "proxied_p99": round(pct(proxied, 0.99) * 1e3, 3),
                "added_p50": round((pct(proxied, 0.5) - pct(direct, 0.5)) * 1e3, 3),
                "added_p99": round((pct(proxied, 0.99) - pct(direct, 0.99)) * 1e3, 3),
                "proxy_cpu_per_request": round(cpu / len(proxied) * 1e3, 3),
            }
            # 2. new connection each time (warm leaf cache)
            fresh = []
            for _ in range(30):
                start = time.perf_counter()
                c = proxied_conn(port, up.port, cordon_ca)
                timed_requests(c, 1)
                c.close()
                fresh.append(time.perf_counter() - start)
            fresh_direct = []
            for _ in range(30):
                start = time.perf_counter()
                c = direct_conn(up.port, upstream_ca)
                timed_requests(c, 1)
                c.close()
                fresh_direct.append(time.perf_counter() - start)
            report["new_connection_ms"] = {"proxied_p50": round(statistics.median(fresh) * 1e3, 2),
                                           "direct_p50": round(statistics.median(fresh_direct) * 1e3, 2)}
            # 2a. keep-alive throughput with hey (Go; -host keeps the port out of its SNI), if installed
            if shutil.which("hey"):
                def hey(*extra: str) -> float:
                    out = subprocess.run(["hey", "-n", "4000", "-c", "16", "-host", "api.test", *extra],
                                         capture_output=True, text=True, timeout=300).stdout
                    return float(next(x for x in out.splitlines() if "Requests/sec" in x).split()[-1])

                direct_rps = hey(f"https://127.0.0.1:{up.port}/small")
                cpu_before = cpu_seconds(pid)
                proxied_rps = hey("-x", f"http://127.0.0.1:{port}", f"https://api.test:{up.port}/small")
                cpu_after = cpu_seconds(pid)
                fresh_rps = hey("-disable-keepalive", "-x", f"http://127.0.0.1:{port}", f"https://api.test:{up.port}/small")
                report["hey_c16"] = {
                    "direct_req_per_s": round(direct_rps), "proxied_req_per_s": round(proxied_rps),
                    "proxy_cpu_ms_per_request": round((cpu_after - cpu_before) / 4000 * 1e3, 3),
                    "proxied_new_connection_per_s": round(fresh_rps),
                    "proxy_cpu_ms_per_new_connection": round((cpu_seconds(pid) - cpu_after) / 4000 * 1e3, 3),
                }
            # 2b. memory per idle MITM'd keep-alive connection (each made one request, then stays open)
            base_rss = rss_kib(pid)
            idle = []
            for _ in range(args.idle):
                c = proxied_conn(port, up.port, cordon_ca)
                timed_requests(c, 1)
                idle.append(c)
            time.sleep(0.5)
            report["idle_connections"] = {
                "count": len(idle), "rss_kib_before": base_rss, "rss_kib_after": rss_kib(pid),
                "kib_per_connection": round((rss_kib(pid) - base_rss) / max(1, len(idle)), 1),
            }
            for c in idle:
                c.close()
            # 3. SSE
            c = direct_conn(up.port, upstream_ca)
            sd = sse_delays(c)
            c.close()
            c = proxied_conn(port, up.port, cordon_ca)
            sp = sse_delays(c)
            c.close()
            report["sse_ms"] = {
                "events": len(sp), "direct_p50": round(pct(sd, 0.5) * 1e3, 3), "proxied_p50": round(pct(sp, 0.5) * 1e3, 3),
                "proxied_p99": round(pct(sp, 0.99) * 1e3, 3), "added_p50": round((pct(sp, 0.5) - pct(sd, 0.5)) * 1e3, 3),
                "first_event_proxied": round(sp[0] * 1e3, 3), "first_event_direct": round(sd[0] * 1e3, 3),
            }
            # 4. streaming with RSS sampling
            samples: list[int] = []
            stop = threading.Event()

            def sample() -> None:
                while not stop.is_set():
                    samples.append(rss_kib(pid))
                    time.sleep(0.1)

            rss_before = rss_kib(pid)
            sampler = threading.Thread(target=sample)
            sampler.start()
            env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
            out = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "-x", proxy.url, "--cacert", str(cordon_ca), "-w",
                 "%{speed_download} %{size_download}", f"https://api.test:{up.port}/big"],
                capture_output=True, text=True, env=env, timeout=600,
            )
            stop.set()
            sampler.join()
            speed, size = out.stdout.split()
            direct_out = subprocess.run(
                ["curl", "-sS", "-o", "/dev/null", "--cacert", str(upstream_ca), "--resolve",
                 f"api.test:{up.port}:127.0.0.1", "-w", "%{speed_download}", f"https://api.test:{up.port}/big"],
                capture_output=True, text=True, env=env, timeout=600,
            )
            report["stream"] = {
                "bytes": int(size), "proxied_MBps": round(float(speed) / 1e6, 1),
                "direct_MBps": round(float(direct_out.stdout) / 1e6, 1),
                "rss_kib_before": rss_before, "rss_kib_min": min(samples), "rss_kib_max": max(samples),
                "rss_kib_after": rss_kib(pid), "samples": len(samples),
            }
        finally:
            proxy.stop()
    print(json.dumps(report, indent=2))
    return 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())
