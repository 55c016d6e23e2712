"""Constant memory: a large upload streams through the MITM without the proxy buffering it."""

from __future__ import annotations

import http.client
import json
import ssl
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cordon_testing.proxy import TIMEOUT, running_stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/status"),
]

MiB = 1 << 20
UPLOAD = 256 * MiB
BLOCK = b"\x5a" * MiB
GROWTH_LIMIT = 32 * MiB
STALL_UNTIL = 64 * MiB  # the upstream reads nothing until the client got this far (or could not: backpressure)
STALL_AT_MOST = 1.0


class Upload:
    """The client's generated body and the upstream's discarding reader, sharing one progress counter."""

    def __init__(self) -> None:
        self.generated = 0
        self.far_enough = threading.Event()
        self.stall = False
        self.sent_while_stalled = 0

    def blocks(self, total: int) -> Iterator[bytes]:
        """``total`` bytes, generated one reused 1 MiB block at a time (never held whole)."""
        self.generated = 0
        while self.generated < total:
            block = BLOCK[: total - self.generated]
            yield block
            self.generated += len(block)
            if self.generated >= STALL_UNTIL:
                self.far_enough.set()

    def discard(self, h, seen) -> None:  # type: ignore[no-untyped-def]
        """Read the body in 64 KiB pieces and drop them; answer with how many bytes arrived.

        With ``stall`` it first reads nothing while the client sends: a proxy that keeps reading the client
        without waiting for the upstream to drain would hold everything sent meanwhile (STALL_UNTIL bytes).
        A proxy with backpressure stops the client after a few socket buffers; the stall then ends by time."""
        if self.stall:
            self.far_enough.wait(STALL_AT_MOST)
            self.sent_while_stalled = self.generated
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

    def send(self, proxy_port: int, upstream_port: int, cordon_ca: Path, size: int) -> dict[str, int]:
        ctx = ssl.create_default_context(cafile=str(cordon_ca))
        conn = http.client.HTTPSConnection("127.0.0.1", proxy_port, context=ctx, timeout=TIMEOUT)
        conn.set_tunnel("api.test", upstream_port)
        try:
            conn.request("PUT", "/upload", body=self.blocks(size), headers={"Content-Length": str(size)},
                         encode_chunked=False)
            response = conn.getresponse()
            assert response.status == 200
            return json.loads(response.read())  # type: ignore[no-any-return]
        finally:
            conn.close()


def peak_rss(pid: int) -> int:
    """The process's peak resident set size (VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmHWM in /proc/{pid}/status")


def test_a_256_mib_upload_streams_through_in_constant_memory(tmp_path: Path) -> None:
    upload = Upload()
    with running_stack(tmp_path) as stack:
        stack.upstream.handlers["/upload"] = upload.discard
        stack.upstream.unread_body.add("/upload")  # the handler reads the body itself: nothing is recorded
        proxy = stack.proxy
        assert proxy.proc is not None
        ports = (proxy.port, stack.upstream.port, stack.cordon_ca)
        # warm up: leaf certificate, upstream TLS and buffers of one small upload through the same path
        assert upload.send(*ports, 4 * MiB) == {"received": 4 * MiB}
        before = peak_rss(proxy.proc.pid)
        upload.stall = True
        assert upload.send(*ports, UPLOAD) == {"received": UPLOAD}
        growth = peak_rss(proxy.proc.pid) - before
        assert proxy.proc.poll() is None
    # backpressure itself: while the upstream read nothing, the client was stopped after a few socket buffers
    assert upload.sent_while_stalled < GROWTH_LIMIT, f"{upload.sent_while_stalled / MiB:.0f} MiB sent while stalled"
    assert growth < GROWTH_LIMIT, f"the proxy's peak RSS grew by {growth / MiB:.1f} MiB for a 256 MiB upload"
    assert "PUT api.test/upload 200" in proxy.logs()
