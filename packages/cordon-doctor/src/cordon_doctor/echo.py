"""A local TLS echo upstream for the demo and ``doctor --runtimes``: it records each request head it receives.

The server listens on ``127.0.0.1:0`` (and the same port on ``[::1]`` when it can) with a certificate the caller supplies (for ``localhost``, signed by a
throwaway CA), runs in a background thread, and answers every request with JSON describing what it received.
Credential-like header values are masked in the JSON it sends back, so the response never carries a secret
to the client; the full head stays in memory (:attr:`EchoServer.requests`) for the caller to verify.

It also answers ``GET .../info/refs?service=git-upload-pack`` with a minimal smart-HTTP ref advertisement so
``git ls-remote`` can be exercised through the proxy.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cordon_doctor.mask import SENSITIVE_HEADERS, mask_header_value

HANDSHAKE_TIMEOUT = 10.0
GIT_REF = "5c8d1a9bd2a3c4e5f60718293a4b5c6d7e8f9012"


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """One request head as the upstream received it (header values unmasked: keep in memory only)."""

    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body_bytes: int

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value
        return None

    def header_values(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive)."""
        wanted = name.lower()
        return [value for key, value in self.headers if key.lower() == wanted]

    def describe(self) -> dict[str, Any]:
        """JSON-able description with credential-like values masked (what the echo sends back)."""
        return {
            "method": self.method,
            "path": self.path,
            "headers": [
                [key, mask_header_value(value) if key.lower() in SENSITIVE_HEADERS else value]
                for key, value in self.headers
            ],
            "body_bytes": self.body_bytes,
        }


@dataclass
class _Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    requests: list[ReceivedRequest] = field(default_factory=list)
    tls_failures: list[str] = field(default_factory=list)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _TLSServer

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default stderr access log."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        received = ReceivedRequest(self.command, self.path, tuple(self.headers.items()), len(body))
        with self.server.log.lock:
            self.server.log.requests.append(received)
        if self.command == "GET" and "/info/refs" in self.path and "service=git-upload-pack" in self.path:
            payload = _git_advertisement()
            content_type = "application/x-git-upload-pack-advertisement"
        else:
            payload = json.dumps({"received": received.describe()}, indent=2).encode() + b"\n"
            content_type = "application/json"
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle


def _pkt_line(text: str) -> bytes:
    data = text.encode()
    return f"{len(data) + 4:04x}".encode() + data


def _git_advertisement() -> bytes:
    """A smart-HTTP v0 advertisement of one branch (enough for ``git ls-remote``)."""
    return (
        _pkt_line("# service=git-upload-pack\n")
        + b"0000"
        + _pkt_line(f"{GIT_REF} HEAD\0symref=HEAD:refs/heads/main agent=cordon-echo\n")
        + _pkt_line(f"{GIT_REF} refs/heads/main\n")
        + b"0000"
    )


class _TLSServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, context: ssl.SSLContext, log: _Log, address: tuple[str, int] = ("127.0.0.1", 0)) -> None:
        self.context = context
        self.log = log
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Do the TLS handshake in the worker thread, recording failures (a client that came directly)."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self.log.lock:
                self.log.tls_failures.append(type(exc).__name__ + ": " + str(exc))
            return
        try:
            super().finish_request(tls, client_address)
        finally:
            try:
                tls.close()
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Client hang-ups are normal here; stay quiet."""


class _TLSServer6(_TLSServer):
    address_family = socket.AF_INET6


class EchoServer:
    """The echo upstream, started with :meth:`start` (or as a context manager) and stopped with :meth:`close`."""

    def __init__(self, cert_file: Path, key_file: Path) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        context.set_alpn_protocols(["http/1.1"])
        self._log = _Log()
        self._server = _TLSServer(context, self._log)
        self._servers: list[_TLSServer] = [self._server]
        try:  # `localhost` may resolve to ::1 first: serve the same port there too, when IPv6 loopback exists
            self._servers.append(_TLSServer6(context, self._log, ("::1", self.port)))
        except OSError:
            pass
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The TCP port it listens on (127.0.0.1)."""
        return int(self._server.server_address[1])

    def start(self) -> EchoServer:
        """Serve in daemon threads (one per listening socket)."""
        for server in self._servers:
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="cordon-echo", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def close(self) -> None:
        """Stop serving and close the listening sockets (idempotent)."""
        if self._threads:
            for server in self._servers:
                server.shutdown()
            for thread in self._threads:
                thread.join(timeout=5)
            self._threads = []
        for server in self._servers:
            server.server_close()

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A snapshot of every request received so far."""
        with self._log.lock:
            return list(self._log.requests)

    @property
    def tls_failures(self) -> list[str]:
        """A snapshot of every failed TLS handshake (a client that did not trust this server's CA)."""
        with self._log.lock:
            return list(self._log.tls_failures)

    def reset(self) -> None:
        """Forget what was received so far."""
        with self._log.lock:
            self._log.requests.clear()
            self._log.tls_failures.clear()

    def __enter__(self) -> EchoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

