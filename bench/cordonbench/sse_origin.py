"""A TLS SSE origin on 127.0.0.1: each request gets N events, each ``data: <time.time_ns()>``, chunked.

``GET /ping`` answers ``pong`` instead (used to warm a kept-alive path before a timed stream).

Run by the benchmark as a subprocess; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import ssl
import time


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, events: int, interval: float) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            if not head:
                return
            if head.startswith(b"GET /ping "):  # lets a client warm the path before timing the stream
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\npong")
                await writer.drain()
                continue
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n")
            for i in range(events):
                if i:
                    await asyncio.sleep(interval)
                payload = f"id: {i}\ndata: {time.time_ns()}\n\n".encode()
                writer.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ssl.SSLError):
        pass
    finally:
        writer.close()


async def _serve(args: argparse.Namespace) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(args.cert, args.key)
    ctx.set_alpn_protocols(["http/1.1"])
    server = await asyncio.start_server(lambda r, w: _handle(r, w, args.events, args.interval),
                                        "127.0.0.1", args.port, ssl=ctx)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Parse the arguments and serve until killed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--events", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.02)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
