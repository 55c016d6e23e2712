"""WebSocket through the MITM, with the ``websockets`` library on both ends.

The upgrade request to a routed host is injected like any request; after the upstream's ``101`` the bytes are
spliced both ways until either side closes (text, binary, close codes both ways). Any other upstream status is
relayed as an ordinary response. The client opens the tunnel itself (CONNECT on a plain socket) and hands the
socket to ``websockets``, so no name is ever resolved outside the proxy's test resolver.

The client is websockets' asyncio client, which reads and writes its TLS connection from one thread. The sync
client reads in a thread of its own while the caller's thread writes, both on one ``ssl.SSLSocket``; an OpenSSL
connection is not safe to use from two threads at once, and a TLS 1.3 session ticket (which a TLS server sends
right after the handshake, so on loopback just as the client writes its upgrade request) read during that write
can lose the request: the client then waits for a 101 that never comes. That race is the client's, with or
without cordon in between.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import trustme
from cordon_testing.proxy import ProxyProcess, RouteSpec, free_port, write_config
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.server import Server, ServerConnection, serve

SECRET = "sk-websocket-secret-91b2"
DUMMY = "sk-dummy-websocket"
TIMEOUT = 10.0


@dataclass
class WsUpstream:
    server: Server
    port: int
    headers: list[list[tuple[str, str]]] = field(default_factory=list)
    close_codes: list[tuple[str, int | None]] = field(default_factory=list)  # (request path, code) per connection
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class WsStack:
    upstream: WsUpstream
    proxy: ProxyProcess
    cordon_ca: Path


@pytest.fixture(scope="module")
def ws_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WsStack]:
    directory = tmp_path_factory.mktemp("websocket")
    ca = trustme.CA()
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("api.test").configure_cert(server_ctx)
    ca_path = directory / "upstream-ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    state: dict[str, WsUpstream] = {}

    def handler(ws: ServerConnection) -> None:
        up = state["up"]
        with up.lock:
            up.headers.append(list(ws.request.headers.raw_items()) if ws.request else [])
        try:
            for message in ws:
                if message == "close-me":
                    ws.close(4001, "bye from upstream")
                    break
                ws.send("echo:" + message if isinstance(message, str) else b"echo:" + message)
        except ConnectionClosed:
            pass
        with up.lock:
            up.close_codes.append((ws.request.path if ws.request else "", ws.close_code))

    def process_request(connection: ServerConnection, request: object) -> object:
        if getattr(request, "path", "").startswith("/deny"):
            return connection.respond(403, "denied by upstream\n")
        return None

    server = serve(handler, "127.0.0.1", 0, ssl=server_ctx, process_request=process_request, compression=None)
    up = WsUpstream(server, server.socket.getsockname()[1])
    state["up"] = up
    thread = threading.Thread(target=server.serve_forever, name="ws-upstream", daemon=True)
    thread.start()
    port = free_port()
    config = write_config(
        directory, port, [RouteSpec("api", "api.test", "CORDON_TEST_SECRET")], upstream_ca_file=ca_path
    )
    env = dict(os.environ, CORDON_TEST_SECRET=SECRET)
    try:
        with ProxyProcess(config, port, env=env) as proxy:
            yield WsStack(up, proxy, directory / "state" / "certs" / "ca-cert.pem")
    finally:
        server.shutdown()
        thread.join(TIMEOUT)


def _tunnel(stack: WsStack) -> socket.socket:
    authority = f"api.test:{stack.upstream.port}"
    sock = socket.create_connection(("127.0.0.1", stack.proxy.port), timeout=TIMEOUT)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "proxy closed the CONNECT"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200 "), head
    return sock


def _open(stack: WsStack, path: str = "/v1/realtime") -> connect:
    """The opening handshake through a fresh tunnel (an async context manager giving the connection)."""
    ctx = ssl.create_default_context(cafile=str(stack.cordon_ca))
    return connect(
        f"wss://api.test:{stack.upstream.port}{path}",
        sock=_tunnel(stack),
        ssl=ctx,
        server_hostname="api.test",
        additional_headers={"Authorization": f"Bearer {DUMMY}"},
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        compression=None,
        proxy=None,
    )


async def _recv(ws: ClientConnection) -> str | bytes:
    async with asyncio.timeout(TIMEOUT):
        return await ws.recv()


def test_websocket_text_binary_and_client_close(ws_stack: WsStack) -> None:
    path = "/v1/realtime?test=client-close"  # this test's connection among the module's (its close may land late)

    async def talk() -> None:
        async with _open(ws_stack, path) as ws:
            await ws.send("hello")
            assert await _recv(ws) == "echo:hello"
            await ws.send(b"\x00\x01\xffbinary")
            assert await _recv(ws) == b"echo:\x00\x01\xffbinary"
            big = "x" * 200_000
            await ws.send(big)
            assert await _recv(ws) == "echo:" + big
            await ws.close(1000, "done")

    asyncio.run(talk())
    headers = ws_stack.upstream.headers[-1]
    auth = [v for n, v in headers if n.lower() == "authorization"]
    assert auth == [f"Bearer {SECRET}"], "the upgrade request is injected like any other"
    assert not [n for n, _ in headers if n.lower() == "proxy-authorization"]
    assert [v.lower() for n, v in headers if n.lower() == "upgrade"] == ["websocket"]
    def codes() -> list[int | None]:
        with ws_stack.upstream.lock:
            return [code for seen, code in ws_stack.upstream.close_codes if seen == path]

    for _ in range(int(TIMEOUT / 0.05)):
        if codes():
            break
        threading.Event().wait(0.05)
    assert codes() == [1000]


def test_websocket_upstream_close_code_reaches_client(ws_stack: WsStack) -> None:
    async def talk() -> ConnectionClosed:
        async with _open(ws_stack) as ws:
            await ws.send("close-me")
            with pytest.raises(ConnectionClosed) as info:
                await _recv(ws)
        return info.value

    closed = asyncio.run(talk())
    assert closed.rcvd is not None
    assert (closed.rcvd.code, closed.rcvd.reason) == (4001, "bye from upstream")


def test_websocket_refused_upgrade_is_relayed_as_a_response(ws_stack: WsStack) -> None:
    async def talk() -> None:
        async with _open(ws_stack, "/deny"):
            pass

    with pytest.raises(InvalidStatus) as info:
        asyncio.run(talk())
    assert info.value.response.status_code == 403
    assert SECRET.encode() not in info.value.response.body
