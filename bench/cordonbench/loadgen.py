"""External load tools: hey (keep-alive throughput/latency) and curl (streamed download), output parsed."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class HeyResult:
    """Parsed hey summary."""

    rps: float
    p50: float  # seconds
    p99: float
    ok: int  # responses with status 200
    errors: int
    total: float  # seconds of the run

    @property
    def ok_rps(self) -> float:
        """Successful (200) responses per second; hey's own Requests/sec also counts failures."""
        return self.ok / self.total if self.total else 0.0


def parse_hey(text: str) -> HeyResult:
    """Parse hey's default text summary (Requests/sec, latency distribution, status codes, errors)."""
    rps = re.search(r"Requests/sec:\s*([\d.]+)", text)
    total = re.search(r"Total:\s*([\d.]+) secs", text)
    slowest = re.search(r"Slowest:\s*([\d.]+) secs", text)
    if not rps:
        raise ValueError("hey output without a summary:\n" + text[-2000:])
    # with very few responses hey prints "0% in 0.0000 secs" for the upper percentiles: use Slowest then
    p50 = re.search(r"50%+ in ([\d.]+) secs", text)
    p99 = re.search(r"99%+ in ([\d.]+) secs", text)
    worst = float(slowest.group(1)) if slowest else float("nan")
    ok = sum(int(n) for n in re.findall(r"\[200\]\s+(\d+) responses", text))
    errors = 0
    if "Error distribution:" in text:
        errors = sum(int(n) for n in re.findall(r"^\s*\[(\d+)\]\s", text.split("Error distribution:", 1)[1],
                                                   re.MULTILINE))
    others = sum(int(n) for code, n in re.findall(r"\[(\d{3})\]\s+(\d+) responses", text) if code != "200")
    return HeyResult(float(rps.group(1)), float(p50.group(1)) if p50 else worst,
                     float(p99.group(1)) if p99 else worst, ok, errors + others,
                     float(total.group(1)) if total else 0.0)


def run_hey(hey: str, url: str, *, proxy_port: int | None, host_header: str | None, conns: int,
            seconds: float, disable_keepalive: bool = False) -> HeyResult:
    """Run hey for ``seconds`` with ``conns`` connections (through the proxy when a port is given)."""
    argv = [hey, "-c", str(conns), "-z", f"{seconds:g}s", "-t", "20"]
    if proxy_port is not None:
        argv += ["-x", f"http://127.0.0.1:{proxy_port}"]
    if host_header:
        argv += ["-host", host_header]
    if disable_keepalive:
        argv.append("-disable-keepalive")
    argv.append(url)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
    return parse_hey(proc.stdout)


def start_hey(hey: str, url: str, *, proxy_port: int, host_header: str, conns: int, seconds: float,
              rate: int) -> subprocess.Popen[str]:
    """hey at a fixed rate (``rate`` requests/s per connection) through a proxy, started, not waited for:
    two of them load two proxies at the same time (parse each with ``parse_hey(proc.communicate()[0])``)."""
    argv = [hey, "-c", str(conns), "-q", str(rate), "-z", f"{seconds:g}s", "-t", "20",
            "-x", f"http://127.0.0.1:{proxy_port}", "-host", host_header, url]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def run_curl_download(url: str, *, proxy_port: int | None, cacert: str, resolve: str | None) -> float:
    """Bytes/s of one download of ``url`` to /dev/null with curl (HTTP/1.1)."""
    argv = ["curl", "-sS", "--http1.1", "-o", "/dev/null", "-w", "%{speed_download} %{http_code}",
            "--cacert", cacert, "--max-time", "60"]
    if proxy_port is not None:
        argv += ["-x", f"http://127.0.0.1:{proxy_port}"]
    if resolve:
        argv += ["--resolve", resolve]
    argv.append(url)
    env_strip = {"http_proxy", "https_proxy", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY",
                 "no_proxy"}
    import os

    env = {k: v for k, v in os.environ.items() if k not in env_strip}
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=env)
    parts = proc.stdout.split()
    if proc.returncode != 0 or len(parts) != 2 or parts[1] != "200":
        raise RuntimeError(f"curl {url} failed ({proc.returncode}): {proc.stderr.strip()[:200]} {proc.stdout}")
    return float(parts[0])
