"""Leaf issuance cost in cordon-ca: cold (new P-256 key + CA signature + server SSLContext) and cached hit.

Run from the repository root:  uv run python bench/bench_leaf.py [--cold N] [--hit N] [--json]
Prints median / p99 / n for each step; no network, a throwaway CA in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cryptography
from cordon_ca import LeafContextCache, load_or_create_ca, server_context


def _measure(fn: Callable[[int], object], n: int) -> tuple[list[float], list[float]]:
    """Wall-clock and thread-CPU time per call, in µs (CPU time is robust to other load on the machine)."""
    wall, cpu = [], []
    for i in range(n):
        c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
        fn(i)
        w1, c1 = time.perf_counter_ns(), time.thread_time_ns()
        wall.append((w1 - w0) / 1000.0)
        cpu.append((c1 - c0) / 1000.0)
    return wall, cpu


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def _summary(name: str, measured: tuple[list[float], list[float]]) -> dict[str, object]:
    wall, cpu = measured
    return {
        "step": name,
        "n": len(wall),
        "median_us": statistics.median(wall),
        "p99_us": _p99(wall),
        "cpu_median_us": statistics.median(cpu),
    }


def run(cold: int, hit: int) -> list[dict[str, object]]:
    """Run every measurement and return one summary per step."""
    with tempfile.TemporaryDirectory() as tmp:
        ca = load_or_create_ca(Path(tmp, "ca-cert.pem"), Path(tmp, "ca-key.pem"), namespace="bench")
        warm = LeafContextCache(ca, allowed_hosts=None)
        for i in range(50):  # warm-up: imports, OpenSSL tables
            warm.get(f"warm{i}.test")
        results = []
        issued = [ca.issue(f"issue{i}.test", key_format="traditional") for i in range(min(cold, 200))]
        results.append(_summary("issue_leaf (P-256 key + signature)", _measure(lambda i: ca.issue(f"h{i}.test"), cold)))
        results.append(
            _summary(
                "server_context (SSLContext + load_cert_chain via 0600 temp file)",
                _measure(lambda i: server_context(issued[i % len(issued)].cert_pem, issued[i % len(issued)].key_pem), cold),
            )
        )
        cache = LeafContextCache(ca, maxsize=cold + 10, allowed_hosts=None)
        results.append(_summary("LeafContextCache.get miss (cold: key + sign + context)",
                                _measure(lambda i: cache.get(f"cold{i}.test"), cold)))
        cache.get("api.test")
        results.append(_summary("LeafContextCache.get hit (cached)", _measure(lambda _i: cache.get("api.test"), hit)))
        return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cold", type=int, default=2000, help="samples for the cold steps (default 2000)")
    parser.add_argument("--hit", type=int, default=100_000, help="samples for the cached hit (default 100000)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.cold, args.hit)
    env = {
        "python": platform.python_version(),
        "cryptography": cryptography.__version__,
        "openssl (cryptography)": cryptography.hazmat.backends.openssl.backend.openssl_version_text(),
        "openssl (ssl)": ssl.OPENSSL_VERSION,
        "cpu": _cpu(),
        "cores": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }
    if args.json:
        print(json.dumps({"env": env, "results": results}, indent=2))
        return 0
    for key, value in env.items():
        print(f"{key}: {value}")
    print()
    print("| step | n | median (wall) | p99 (wall) | median (thread CPU) |")
    print("|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['step']} | {r['n']} | {_fmt(r['median_us'])} | {_fmt(r['p99_us'])} | {_fmt(r['cpu_median_us'])} |"
        )
    return 0


def _fmt(us: object) -> str:
    value = float(us)  # type: ignore[arg-type]
    return f"{value / 1000:.3f} ms" if value >= 1000 else f"{value:.2f} µs"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


if __name__ == "__main__":
    sys.exit(main())
