"""Test helpers (used by cordon-ca's tests and usable by other packages): a loopback TLS server in a thread
and client handshakes through Python ``ssl``, ``openssl``, curl and Node. Loopback only, bounded waits."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

TIMEOUT = 10.0
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nok"


class TLSServer:
    """Serves ``ctx`` on 127.0.0.1:<ephemeral> from a daemon thread; answers each request with ``200 ok``."""

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self._sock = socket.create_server(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port: int = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="cordon-ca-test-tls", daemon=True)
        self.handshake_errors: list[str] = []

    def __enter__(self) -> TLSServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(TIMEOUT)
                try:
                    with self.ctx.wrap_socket(conn, server_side=True) as tls, contextlib.suppress(OSError):
                        tls.recv(65536)
                        tls.sendall(RESPONSE)
                except (ssl.SSLError, OSError) as exc:
                    self.handshake_errors.append(type(exc).__name__)


def python_handshake(
    port: int, host: str, cafile: str | os.PathLike[str], *, alpn: list[str] | None = None
) -> str | None:
    """Handshake like a strict client (VERIFY_X509_STRICT, as Python ≥ 3.13 defaults); returns the ALPN.

    Raises ``ssl.SSLCertVerificationError`` (or another ``ssl.SSLError``) when verification fails.
    """
    ctx = ssl.create_default_context(cafile=str(cafile))
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    if alpn:
        ctx.set_alpn_protocols(alpn)
    with (
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as raw,
        ctx.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(b"GET / HTTP/1.1\r\nHost: " + host.encode() + b"\r\n\r\n")
        tls.recv(1024)
        return tls.selected_alpn_protocol()


def openssl_verify(
    cafile: str | os.PathLike[str], leaf: str | os.PathLike[str], host: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``openssl verify -x509_strict -CAfile CA [-verify_hostname|-verify_ip HOST] LEAF``."""
    argv = ["openssl", "verify", "-x509_strict", "-CAfile", str(cafile)]
    if host is not None:
        import ipaddress

        try:
            ipaddress.ip_address(host)
            argv += ["-verify_ip", host]
        except ValueError:
            argv += ["-verify_hostname", host]
    argv.append(str(leaf))
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)


def curl_get(port: int, host: str, cafile: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    """curl https://HOST:PORT/ with ``--resolve HOST:PORT:127.0.0.1`` (no DNS) and only ``cafile`` trusted."""
    argv = ["curl", "-sS", "--noproxy", "*", "--max-time", str(int(TIMEOUT)), "--cacert", str(cafile),
            "--capath", "/nonexistent"]
    if ":" in host:
        url = f"https://[{host}]:{port}/"
    elif host.replace(".", "").isdigit():
        url = f"https://{host}:{port}/"
    else:
        argv += ["--resolve", f"{host}:{port}:127.0.0.1"]
        url = f"https://{host}:{port}/"
    return subprocess.run([*argv, url], capture_output=True, text=True, timeout=TIMEOUT + 5, check=False)


_NODE_SCRIPT = r"""
const tls = require('tls'); const fs = require('fs');
const [port, host, mode, ca] = process.argv.slice(1);
const opts = {host: '127.0.0.1', port: Number(port), servername: host.includes(':') ? undefined : host};
if (mode === 'ca') opts.ca = fs.readFileSync(ca);
opts.checkServerIdentity = (_h, cert) => tls.checkServerIdentity(host, cert);
const s = tls.connect(opts, () => { s.write('GET / HTTP/1.1\r\nHost: ' + host + '\r\n\r\n'); });
s.setTimeout(10000, () => { console.log('timeout'); process.exit(3); });
s.on('data', () => { console.log('ok'); s.end(); process.exit(0); });
s.on('error', (e) => { console.log((e.code || 'ERROR') + ' ' + e.message); process.exit(1); });
"""


def node_get(
    port: int, host: str, cafile: str | os.PathLike[str], *, mode: str = "ca"
) -> subprocess.CompletedProcess[str]:
    """Node ``tls.connect`` to 127.0.0.1:PORT for HOST; ``mode`` ``ca`` (the ``ca:`` option) or ``extra``
    (``NODE_EXTRA_CA_CERTS``). Exit 0 and ``ok`` on success; else the error code on stdout."""
    env = {k: v for k, v in os.environ.items() if k != "NODE_EXTRA_CA_CERTS"}
    if mode == "extra":
        env["NODE_EXTRA_CA_CERTS"] = str(cafile)
    argv = ["node", "-e", _NODE_SCRIPT, str(port), host, mode, str(cafile)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT + 5, check=False, env=env)


def have(tool: str) -> bool:
    """True when ``tool`` is on PATH."""
    return shutil.which(tool) is not None


@contextlib.contextmanager
def serving(ctx: ssl.SSLContext) -> Iterator[TLSServer]:
    """``with serving(ctx) as server: ... server.port``."""
    with TLSServer(ctx) as server:
        yield server


def write_pem(path: Path, data: bytes) -> Path:
    """Write PEM bytes to ``path`` and return it."""
    path.write_bytes(data)
    return path
