"""Constant memory: a large upload streams through the MITM without the proxy buffering it."""

from __future__ import annotations

import http.client
import json
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_proxy.testing import TIMEOUT, running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status"),
]

UPLOAD = 256 * 1024 * 1024
BLOCK = b"\x5a" * (1 << 20)
GROWTH_LIMIT = 32 * 1024 * 1024


def discard(h, seen) -> None:  # type: ignore[no-untyped-def]
    """Read the request body in 64 KiB pieces and drop them; answer with how many bytes arrived."""
    left = int(h.headers["Content-Length"])
    received = 0
    while left > 0:
        piece = h.rfile.read(min(left, 1 << 16))
        if not piece:
            break
        received += len(piece)
        left -= len(piece)
    body = json.dumps({"received": received}).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def blocks(total: int) -> Iterator[bytes]:
    """``total`` bytes, generated one reused 1 MiB block at a time (never held whole)."""
    while total > 0:
        yield BLOCK if total >= len(BLOCK) else BLOCK[:total]
        total -= len(BLOCK)


def upload(proxy_port: int, upstream_port: int, cordon_ca: Path, size: int) -> dict[str, int]:
    ctx = ssl.create_default_context(cafile=str(cordon_ca))
    conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=ctx, timeout=TIMEOUT)
    conn.set_tunnel("api.test", upstream_port)
    try:
        conn.request("PUT", "/upload", body=blocks(size), headers={"Content-Length": str(size)},
                     encode_chunked=False)
        response = conn.getresponse()
        assert response.status == 200
        return json.loads(response.read())  # type: ignore[no-any-return]
    finally:
        conn.close()


def test_a_256_mib_upload_streams_through_in_constant_memory(tmp_path: Path) -> None:
    with running_stack(tmp_path) as stack:
        stack.upstream.handlers["/upload"] = discard
        stack.upstream.unread_body.add("/upload")  # the handler reads the body itself: nothing is recorded
        proxy = stack.proxy
        assert proxy.proc is not None
        # warm up: leaf certificate, upstream TLS, buffers of one small upload through the same path
        assert upload(proxy.port, stack.upstream.port, stack.cordon_ca, 4 << 20) == {"received": 4 << 20}
        before = peak_rss(proxy.proc.pid)
        assert upload(proxy.port, stack.upstream.port, stack.cordon_ca, UPLOAD) == {"received": UPLOAD}
        growth = peak_rss(proxy.proc.pid) - before
        assert stack.proxy.proc.poll() is None
    assert growth < GROWTH_LIMIT, f"the proxy's peak RSS grew by {growth / 2**20:.1f} MiB for a 256 MiB upload"
    assert "PUT api.test/upload 200" in proxy.logs()
