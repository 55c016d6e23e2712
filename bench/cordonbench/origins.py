"""The loopback origins: nginx over TLS (static files, Authorization echo and check) and a Python SSE server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cordonbench.certs import CertFiles

SMALL_BYTES = 100
BIG_BYTES = 16 * 1024 * 1024

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    sendfile on;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    client_body_temp_path {work}/nginx-tmp/body;
    proxy_temp_path {work}/nginx-tmp/proxy;
    fastcgi_temp_path {work}/nginx-tmp/fastcgi;
    uwsgi_temp_path {work}/nginx-tmp/uwsgi;
    scgi_temp_path {work}/nginx-tmp/scgi;
    default_type application/octet-stream;
    # /injected says whether the real secret arrived without echoing it (cordon masks an echoed key)
    map $http_authorization $bench_injected {{
        default "other";
        "Bearer {secret}" "injected";
        "Bearer dummy-key" "dummy";
    }}
    server {{
        listen 127.0.0.1:{port} ssl;{also}
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        root {www};
        location = /nginx_status {{
            stub_status;
        }}
        location = /echo {{
            default_type text/plain;
            return 200 "$http_authorization";
        }}
        location = /injected {{
            default_type text/plain;
            return 200 "$bench_injected";
        }}
    }}
}}
"""


def prepare_www(www: Path) -> None:
    """Write ``/small`` (100 bytes) and ``/big`` (16 MiB) once."""
    www.mkdir(parents=True, exist_ok=True)
    small = www / "small"
    if not small.exists() or small.stat().st_size != SMALL_BYTES:
        small.write_bytes(b"x" * (SMALL_BYTES - 1) + b"\n")
    big = www / "big"
    if not big.exists() or big.stat().st_size != BIG_BYTES:
        with big.open("wb") as fh:
            block = bytes(range(256)) * 4096
            for _ in range(BIG_BYTES // len(block)):
                fh.write(block)


def start_nginx(nginx: str, work: Path, port: int, leaf: CertFiles, secret: str, *, also: str | None = None
                ) -> subprocess.Popen:
    """Start nginx in the foreground (one process, inherits the caller's CPU pinning); ``secret`` is what
    ``/injected`` recognises (URL-safe characters only); ``also``: a second address to listen on (the bench
    namespace's unrouted address)."""
    www = work / "www"
    prepare_www(www)
    (work / "nginx-tmp").mkdir(exist_ok=True)
    conf = work / "nginx.conf"
    extra = f"\n        listen {also}:{port} ssl;" if also else ""
    conf.write_text(NGINX_CONF.format(work=work, port=port, cert=leaf.cert, key=leaf.key, www=www, also=extra,
                                      secret=secret))
    log = (work / "nginx-stderr.log").open("wb")
    try:
        return subprocess.Popen([nginx, "-p", str(work), "-e", str(work / "nginx-error.log"), "-c", str(conf)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    finally:
        log.close()


def start_sse(work: Path, port: int, leaf: CertFiles, events: int, interval: float) -> subprocess.Popen:
    """Start the SSE origin (``bench/cordonbench/sse_origin.py``) with this interpreter."""
    script = Path(__file__).with_name("sse_origin.py")
    log = (work / "sse-stderr.log").open("wb")
    try:
        return subprocess.Popen(
            [sys.executable, str(script), "--port", str(port), "--cert", str(leaf.cert), "--key", str(leaf.key),
             "--events", str(events), "--interval", str(interval)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    finally:
        log.close()
