"""Test helpers (loopback only, every wait bounded): a recording TLS upstream and the proxy as a subprocess.

* :class:`RecordingUpstream`: a threaded HTTPS (or plain HTTP) server on 127.0.0.1:<ephemeral> with a trustme
  certificate for ``api.test``/``other.test``/``localhost``; it records every request it receives (method,
  path, header list, body, connection number) and answers with a JSON echo, or with a handler per path
  (SSE, large streams, status codes).
* :class:`ProxyProcess`: starts ``python -m cordon_proxy start -c ...`` in a mount namespace whose /etc/hosts
  maps the test names to 127.0.0.1 (see :mod:`cordon_testing.namespaces`; optionally inside a
  :class:`~cordon_testing.namespaces.PrivateNetwork`), waits for /health, stops it with SIGTERM.

Imported only by tests and the bench script; needs ``trustme`` (a dev dependency).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cordon_config.ports import free_port
from cordon_config.proxyproc import ProxyExited, ProxyTimeout, proxy_argv, stop_process
from cordon_config.proxyproc import ProxyProcess as Process

from cordon_testing.namespaces import UNROUTED_ADDRESS, PrivateNetwork, hosts_argv, rewrite_hosts

TIMEOUT = 15.0
TEST_NAMES = ("api.test", "other.test", "third.test", "bad.test", "filed.test")
TEST_HOSTS = (*TEST_NAMES, "localhost", "127.0.0.1")


@dataclass
class Seen:
    """One request as the upstream received it."""

    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    connection: int

    def header(self, name: str) -> list[str]:
        """Every value of ``name`` (case-insensitive)."""
        return [v for n, v in self.headers if n.lower() == name.lower()]


Handler = Callable[["_UpstreamHandler", Seen], None]


class _UpstreamHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # silence
        pass

    def _handle(self) -> None:
        length = self.headers.get("Content-Length")
        if self.path.split("?", 1)[0] in self.server.owner.unread_body:
            body = b""  # the handler answers without reading the body (early response)
        elif self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body = self.rfile.read(int(length)) if length else b""
        seen = Seen(self.command, self.path, list(self.headers.items()), body, self.server.connection_id(self))
        owner = self.server.owner
        with owner.lock:
            owner.requests.append(seen)
        handler = owner.handlers.get(self.path.split("?", 1)[0], echo)
        handler(self, seen)

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
            if size == 0:
                while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            parts.append(self.rfile.read(size))
            self.rfile.readline()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _handle


def echo(h: _UpstreamHandler, seen: Seen) -> None:
    """Default answer: 200 with a JSON body describing the request (header names only, never values)."""
    body = json.dumps(
        {"method": seen.method, "path": seen.path, "header_names": [n for n, _ in seen.headers],
         "body_len": len(seen.body)}
    ).encode()
    h.send_response(200)
    h.send_header("Content-Type", "application/json")
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    if seen.method != "HEAD":
        h.wfile.write(body)


def status(code: int, body: bytes = b"") -> Handler:
    """A handler answering ``code`` with ``body``."""

    def handler(h: _UpstreamHandler, seen: Seen) -> None:
        h.send_response(code)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    return handler


def sse(events: int, interval: float, *, gate: threading.Event | None = None) -> Handler:
    """A chunked ``text/event-stream`` of ``events`` events ``interval`` seconds apart (OpenAI-style chunks).

    With ``gate``, each event after the first waits for the gate to be set (and clears it): the test can
    prove the first event arrived before the upstream sent the second.
    """

    def handler(h: _UpstreamHandler, seen: Seen) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        h.wfile.flush()
        for i in range(events):
            if i and gate is not None:
                if not gate.wait(TIMEOUT):
                    return
                gate.clear()
            elif i:
                time.sleep(interval)
            chunk = {
                "id": "chatcmpl-1", "object": "chat.completion.chunk", "created": int(time.time()),
                "model": "gpt-test", "sent": time.time(),
                "choices": [{"index": 0, "delta": {"content": f"tok{i} "}, "finish_reason": None}],
            }
            data = f"data: {json.dumps(chunk)}\n\n".encode()
            h.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            h.wfile.flush()
        done = b"data: [DONE]\n\n"
        h.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(done), done))
        h.wfile.flush()

    return handler


def stream(total: int, chunk: int = 1 << 16) -> Handler:
    """``total`` bytes of zeros with a Content-Length, written ``chunk`` bytes at a time."""
    block = b"\0" * chunk

    def handler(h: _UpstreamHandler, seen: Seen) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/octet-stream")
        h.send_header("Content-Length", str(total))
        h.end_headers()
        left = total
        while left > 0:
            n = min(left, chunk)
            h.wfile.write(block if n == chunk else block[:n])
            left -= n

    return handler


def echo_key(form: str = "plain", header: str = "Authorization") -> Handler:
    """An upstream that gives the injected credential back (what scrubbing must catch): the value of
    ``header`` in a response header ``X-Echo`` and in the body, as ``form``: ``plain`` (JSON, with its base64
    too, Content-Length), ``chunked`` (the value split across two chunks sent 50 ms apart), ``gzip`` or ``br``
    (compressed JSON). Without that header it echoes ``none``."""

    def handler(h: _UpstreamHandler, seen: Seen) -> None:
        values = seen.header(header)
        value = values[0] if values else "none"
        token = value.split(" ", 1)[-1]
        doc = json.dumps({"authorization": value, "b64": base64.b64encode(token.encode()).decode()}).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("X-Echo", value)
        if form == "chunked":
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            cut = doc.index(token.encode()) + len(token) // 2
            for part in (doc[:cut], doc[cut:]):
                h.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                h.wfile.flush()
                time.sleep(0.05)
            h.wfile.write(b"0\r\n\r\n")
            return
        if form in ("gzip", "br"):
            doc = gzip.compress(doc) if form == "gzip" else _brotli_compress(doc)
            h.send_header("Content-Encoding", form)
        h.send_header("Content-Length", str(len(doc)))
        h.end_headers()
        h.wfile.write(doc)

    return handler


def _brotli_compress(data: bytes) -> bytes:
    import brotli

    return bytes(brotli.compress(data))


def die_mid_body(h: _UpstreamHandler, seen: Seen) -> None:
    """Announce 1000 bytes, send 10, then drop the connection."""
    h.send_response(200)
    h.send_header("Content-Length", "1000")
    h.end_headers()
    h.wfile.write(b"x" * 10)
    h.wfile.flush()
    h.close_connection = True
    with contextlib.suppress(OSError):
        h.connection.shutdown(socket.SHUT_RDWR)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = 256  # the default 5 overflows under concurrent clients (1 s SYN retries)

    def __init__(self, owner: RecordingUpstream, address: str = "127.0.0.1") -> None:
        self.owner = owner
        self._ids: dict[int, int] = {}
        super().__init__((address, 0), _UpstreamHandler)

    def connection_id(self, handler: _UpstreamHandler) -> int:
        key = id(handler.connection)
        with self.owner.lock:
            if key not in self._ids:
                self._ids[key] = len(self._ids) + 1
            return self._ids[key]

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self.owner.ctx
        if ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(TIMEOUT)
            tls = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            with self.owner.lock:
                self.owner.handshake_errors.append(type(exc).__name__)
            return
        try:
            with self.owner.lock:
                self.owner.connections += 1
            _UpstreamHandler(tls, client_address, self)
        except OSError:
            pass
        finally:
            tls.close()


class RecordingUpstream:
    """A loopback HTTPS server (``tls=False``: plain HTTP) recording what it receives.

    ``ca`` is a ``trustme.CA``; its PEM goes to ``ca_path`` for clients and for the proxy's
    ``[tls] upstream_ca_file``. ``hosts``, ``not_before`` and ``not_after`` shape the server's certificate
    (e.g. a wrong name, or an expired one, from a trusted CA). With ``network`` it listens inside that
    :class:`~cordon_testing.namespaces.PrivateNetwork` on every address there (127.0.0.1 and
    :data:`~cordon_testing.namespaces.UNROUTED_ADDRESS`).
    """

    def __init__(self, ca: Any = None, *, tls: bool = True, hosts: tuple[str, ...] = TEST_HOSTS,
                 not_before: Any = None, not_after: Any = None, network: PrivateNetwork | None = None) -> None:
        self.requests: list[Seen] = []
        self.handlers: dict[str, Handler] = {}
        self.unread_body: set[str] = set()  # paths whose handler answers before reading the request body
        self.handshake_errors: list[str] = []
        self.connections = 0
        self.lock = threading.Lock()
        self.ctx: ssl.SSLContext | None = None
        if tls:
            if ca is None:
                import trustme

                ca = trustme.CA()
            self.ca = ca
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ca.issue_cert(*hosts, not_before=not_before, not_after=not_after).configure_cert(ctx)
            ctx.set_alpn_protocols(["http/1.1"])
            self.ctx = ctx
        if network is None:
            self._server = _Server(self)
        else:
            self._server = network.call(lambda: _Server(self, "0.0.0.0"))
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="recording-upstream", daemon=True)

    def __enter__(self) -> RecordingUpstream:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(TIMEOUT)

    def write_ca(self, path: Path) -> Path:
        """Write the trustme CA certificate (PEM) to ``path``."""
        self.ca.cert_pem.write_to_path(str(path))
        return path

    def all_bytes(self) -> bytes:
        """Everything recorded (header names, values and bodies) as one blob, for "never saw X" checks."""
        with self.lock:
            parts = []
            for seen in self.requests:
                parts.append(f"{seen.method} {seen.path}".encode())
                parts.extend(f"{n}: {v}".encode() for n, v in seen.headers)
                parts.append(seen.body)
        return b"\n".join(parts)


# -- the proxy as a subprocess ------------------------------------------------------------------------------


@dataclass
class RouteSpec:
    """A route for :func:`write_config` (secret from the ``env`` source)."""

    name: str
    host: str
    var: str
    header_name: str = "Authorization"
    scheme: str | None = "Bearer"
    basic_username: str | None = None
    allow_plain_http: bool = False
    port: int | None = None
    secret: dict[str, str] | None = None  # another source, e.g. {"source": "file", "path": "/x"}
    methods: tuple[str, ...] | None = None  # [routes.match] methods
    paths: tuple[str, ...] | None = None  # [routes.match] paths
    requests_per_minute: int | None = None  # [routes.limits]
    burst: int | None = None
    scrub_responses: bool = True


def write_config(
    directory: Path,
    port: int,
    routes: list[RouteSpec],
    *,
    upstream_ca_file: Path | None = None,
    extra: str = "",
    secret_ttl: float = 0,
) -> Path:
    """Write ``directory/cordon.toml`` with a CA under ``directory/state/certs`` and the given routes."""
    certs = directory / "state" / "certs"
    lines = [f"listen = {port}", f"secret_ttl = {secret_ttl}", extra, "", "[tls]", "enabled = true",
             f'ca_cert_path = "{certs / "ca-cert.pem"}"', f'ca_key_path = "{certs / "ca-key.pem"}"']
    if upstream_ca_file is not None:
        lines.append(f'upstream_ca_file = "{upstream_ca_file}"')
    for r in routes:
        lines += ["", "[[routes]]", f'name = "{r.name}"']
        if r.allow_plain_http:
            lines.append("allow_plain_http = true")
        if not r.scrub_responses:
            lines.append("scrub_responses = false")
        lines += ["[routes.match]", f'host = "{r.host}"']
        if r.port is not None:
            lines.append(f"port = {r.port}")
        if r.methods is not None:
            lines.append(f"methods = {json.dumps(list(r.methods))}")
        if r.paths is not None:
            lines.append(f"paths = {json.dumps(list(r.paths))}")
        if r.requests_per_minute is not None:
            lines += ["[routes.limits]", f"requests_per_minute = {r.requests_per_minute}"]
            if r.burst is not None:
                lines.append(f"burst = {r.burst}")
        lines.append("[routes.auth]")
        if r.basic_username is not None:
            lines += ['type = "basic"', f'username = "{r.basic_username}"']
        else:
            lines += ['type = "header"', f'header_name = "{r.header_name}"']
            if r.scheme:
                lines.append(f'scheme = "{r.scheme}"')
        secret = r.secret or {"source": "env", "var": r.var}
        lines += ["[routes.auth.secret]", *(f"{k} = {json.dumps(v)}" for k, v in secret.items())]
    path = directory / "cordon.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def approve_as_user(config_path: Path, env: Mapping[str, str]) -> None:
    """Approve ``config_path`` in the scope a proxy started with ``env`` and ``-c config_path`` uses; a config
    that does not load is left for the proxy to report."""
    from cordon_config import ConfigError

    from cordon_testing.config import approve_config

    try:
        approve_config(config_path, env=env, cwd=config_path.parent)
    except ConfigError:
        pass


def health_ok(port: int, timeout: float = 1.0, *, network: PrivateNetwork | None = None) -> bool:
    """True when the proxy on 127.0.0.1:``port`` (inside ``network`` when given) answers /health with 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        if network is not None:
            conn.sock = network.create_connection(("127.0.0.1", port), timeout=timeout)
        conn.request("GET", "/health", headers={"Host": f"127.0.0.1:{port}"})
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


class ProxyProcess:
    """``python -m cordon_proxy start -c <config>`` as a subprocess, logs captured to a file.

    ``resolve`` maps names to addresses in the hosts file of the proxy's mount namespace (default: every test
    name → 127.0.0.1); ``network`` runs it inside a :class:`~cordon_testing.namespaces.PrivateNetwork`, where the
    test names default to :data:`~cordon_testing.namespaces.UNROUTED_ADDRESS` (so an unrouted tunnel to them is
    allowed by the SSRF policy and reaches an upstream listening there).
    """

    def __init__(
        self,
        config_path: Path,
        port: int,
        *,
        env: Mapping[str, str] | None = None,
        resolve: Mapping[str, str] | None = None,
        network: PrivateNetwork | None = None,
        args: tuple[str, ...] = ("--log-level", "debug"),
        approve: bool = True,
    ) -> None:
        self.config_path = config_path
        self.approve = approve
        self.port = port
        self.log_path = config_path.parent / "proxy.log"
        full = dict(os.environ if env is None else env)
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            full.pop(name, None)
        default = UNROUTED_ADDRESS if network is not None else "127.0.0.1"  # in a private network: allowed
        self.names = dict(resolve or {h: default for h in TEST_NAMES})
        self.hosts_file = config_path.parent / "hosts"  # bind-mounted over /etc/hosts in the proxy's namespace
        self.network = network
        home = config_path.parent / "home"
        home.mkdir(exist_ok=True)
        full["HOME"] = str(home)  # the state dir (tokens.toml) lives under XDG_CONFIG_HOME: keep it in the test dir
        full["XDG_CONFIG_HOME"] = str(home / ".config")
        self.env = full
        self.args = args
        self.process: Process | None = None

    @property
    def proc(self) -> subprocess.Popen[bytes] | None:
        return None if self.process is None else self.process.proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, wait: bool = True) -> ProxyProcess:
        """Start the proxy (and wait for /health unless ``wait`` is False).

        With ``approve`` (the default) the test plays the human first: everything in the config is approved
        through the real approval record of the proxy's scope (``cordon route approve --all --yes``).
        """
        if self.approve:
            approve_as_user(self.config_path, self.env)
        argv = hosts_argv(proxy_argv(self.config_path, *self.args), self.names, self.hosts_file)
        if self.network is not None:
            argv = self.network.argv(argv)
        self.process = Process(argv, env=self.env, log_path=self.log_path).start()
        if wait:
            try:
                self.wait_healthy()
            except BaseException:
                self.stop()
                raise
        return self

    def resolve_to(self, names: Mapping[str, str]) -> None:
        """Change what names resolve to for the running proxy (its hosts file, rewritten in place): what a DNS
        change or a poisoned resolver does between two lookups."""
        self.names = dict(names)
        rewrite_hosts(self.hosts_file, self.names)

    def wait_healthy(self, timeout: float = TIMEOUT) -> None:
        """Wait until /health answers 200 (inside the private network when there is one)."""
        assert self.process is not None, "start() first"
        try:
            self.process.wait_until(lambda: health_ok(self.port, timeout=0.5, network=self.network) or None,
                                    timeout)
        except ProxyExited as exc:
            raise RuntimeError(f"proxy exited with {exc.code}:\n{self.logs()}") from None
        except ProxyTimeout:
            raise RuntimeError(f"proxy not healthy within {timeout} s:\n{self.logs()}") from None

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM, wait (bounded), SIGKILL as a last resort; returns the exit code (0 when never started)."""
        code = None if self.process is None else self.process.stop(timeout)
        return 0 if code is None else code

    def logs(self) -> str:
        """Everything the proxy wrote ('' before it started)."""
        return "" if self.process is None else self.process.log_text()

    def __enter__(self) -> ProxyProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@dataclass
class Stack:
    """A running upstream + proxy pair for end-to-end tests."""

    upstream: RecordingUpstream
    proxy: ProxyProcess
    upstream_ca: Path
    cordon_ca: Path
    secrets: dict[str, str] = field(default_factory=dict)
    network: PrivateNetwork | None = None

    @property
    def proxy_url(self) -> str:
        return self.proxy.url

    def connect(self, timeout: float | None = TIMEOUT) -> socket.socket:
        """A TCP connection to the proxy (from inside the stack's private network, when it has one)."""
        return self.create_connection(("127.0.0.1", self.proxy.port), timeout)

    def create_connection(self, address: tuple[str, int], timeout: float | None = None,
                          source_address: object = None) -> socket.socket:
        """``socket.create_connection`` where the stack lives (assign it to an ``http.client`` connection's
        ``_create_connection`` to make that connection there)."""
        if self.network is not None:
            return self.network.create_connection(address, timeout=timeout)
        return socket.create_connection(address, timeout=timeout)

    def curl(self, *args: str, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
        """:func:`curl` run where the stack lives."""
        return curl(*args, timeout=timeout, network=self.network)


@contextlib.contextmanager
def running_stack(
    directory: Path,
    routes: list[RouteSpec] | None = None,
    secrets: Mapping[str, str] | None = None,
    *,
    network: PrivateNetwork | None = None,
    extra_config: str = "",
    env: Mapping[str, str] | None = None,
    secret_ttl: float = 0,
    before_start: Callable[[Path], None] | None = None,
    approve: bool = True,
) -> Iterator[Stack]:
    """Start a recording upstream and a proxy routing ``api.test`` to it (secret ``sk-real-...`` from env).

    With ``network`` both run inside that private network namespace, where an unrouted tunnel can reach the
    upstream at :data:`~cordon_testing.namespaces.UNROUTED_ADDRESS`; connect with :meth:`Stack.connect`.
    """
    routes = routes if routes is not None else [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")]
    secrets = dict(secrets or {"CORDON_TEST_SECRET": "sk-real-secret-0123456789"})
    with RecordingUpstream(network=network) as upstream:
        upstream_ca = upstream.write_ca(directory / "upstream-ca.pem")
        port = free_port()
        config = write_config(
            directory, port, routes, upstream_ca_file=upstream_ca, extra=extra_config, secret_ttl=secret_ttl
        )
        if before_start is not None:
            before_start(config)
        full_env = dict(os.environ if env is None else env)
        full_env.update(secrets)
        proxy = ProxyProcess(config, port, env=full_env, network=network, approve=approve)
        with proxy:
            yield Stack(upstream, proxy, upstream_ca, directory / "state" / "certs" / "ca-cert.pem", secrets,
                        network)


def tokens_for(config_path: Path) -> tuple[Path, str]:
    """(tokens.toml path, namespace) of the scope ``--config config_path`` selects in a ProxyProcess env."""
    from cordon_config.scope import resolve_scope

    home = config_path.parent / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    paths = resolve_scope(None, config_path, env=env, cwd=config_path.parent)
    return paths.tokens_path, paths.namespace


def state_dir_for(config_path: Path) -> Path:
    """The state dir (tokens, audit log) of the scope ``--config config_path`` selects in a ProxyProcess env."""
    from cordon_config.scope import resolve_scope

    home = config_path.parent / "home"
    env = {"HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config")}
    return resolve_scope(None, config_path, env=env, cwd=config_path.parent).state_dir


def read_head(sock: socket.socket) -> bytes:
    """Read ``sock`` up to the blank line that ends a response head, or to EOF: what arrived by then."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    return head


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """Read one whole response from ``sock``: (head, body), the body by its Content-Length (none for 1xx, 204
    and 304), so the next response on a keep-alive connection starts at its own head. A response that ends
    before its head or body is complete, or is framed any other way, is an AssertionError."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed before the end of the response head: {data[:200]!r}"
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    head += b"\r\n\r\n"
    status = head.split(b" ", 2)[1]
    lengths = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
               if line.lower().startswith(b"content-length:")]
    if status.startswith(b"1") or status in (b"204", b"304"):
        length = 0
    else:
        assert len(lengths) == 1, f"read_response reads bodies framed by one Content-Length: {head!r}"
        length = int(lengths[0])
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed after {len(body)} of {length} body bytes"
        body += chunk
    assert len(body) == length, f"{len(body) - length} bytes arrived after the response"
    return head, body


def default_signals() -> None:
    """``preexec_fn`` for a child a test will interrupt: SIGINT and SIGQUIT back to their default actions.

    A shell starts a background job (``pytest &``, a CI step run that way) with SIGINT and SIGQUIT ignored,
    children inherit that, and Python installs its KeyboardInterrupt handler only where SIGINT is not ignored:
    without this, the test's SIGINT never reaches a child that leaves the signal to Python."""
    for signum in (signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def terminate(proc: subprocess.Popen[Any], timeout: float = TIMEOUT) -> int:
    """Stop ``proc``: SIGTERM, a bounded wait, SIGKILL as a last resort; returns its exit code."""
    return stop_process(proc, timeout)


def curl(*args: str, env: Mapping[str, str] | None = None, timeout: float = TIMEOUT,
         network: PrivateNetwork | None = None) -> subprocess.CompletedProcess[str]:
    """Run curl (silent, errors shown) with a clean proxy environment unless ``env`` is given (inside
    ``network`` when given)."""
    base = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    argv = ["curl", "-sS", "--max-time", str(int(timeout)), *args]
    return subprocess.run(
        network.argv(argv) if network is not None else argv, capture_output=True, text=True,
        env=dict(env) if env is not None else base, timeout=timeout + 5,
    )
