"""The proxy's port is held from the moment it is bound: between binding and serving (while `cordon start`
brings up its `[[listeners]]`) no other process can bind it, and a client that connects waits in the backlog."""

from __future__ import annotations

import asyncio
import io
import socket
import ssl

import pytest
from cordon_config.secrets import SecretCache
from cordon_proxy.core.session import Settings, SettingsRef
from cordon_proxy.logs import Logger
from cordon_proxy.server import Proxy
from cordon_proxy.upstream import Resolver, UpstreamPool


def _proxy() -> Proxy:
    return Proxy(SettingsRef(Settings(routes=(), listen_port=0)), leaves=None,
                 pool=UpstreamPool(ssl.create_default_context(), Resolver()), secrets=SecretCache(60.0),
                 logger=Logger(stream=io.StringIO()))


def test_the_port_is_held_before_the_proxy_serves_and_a_waiting_client_is_answered_after() -> None:
    async def main() -> bytes:
        proxy = _proxy()
        server = await proxy.listen(0, serve=False)
        port = server.sockets[0].getsockname()[1]
        squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            with pytest.raises(OSError):  # a bound-but-not-listening socket would let this bind succeed
                squatter.bind(("127.0.0.1", port))
        finally:
            squatter.close()
        reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 5)  # in the backlog
        writer.write(f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        await server.start_serving()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
        await proxy.shutdown(grace=0)
        return head

    assert asyncio.run(main()).startswith(b"HTTP/1.1 ")  # cordon answered the client that waited
