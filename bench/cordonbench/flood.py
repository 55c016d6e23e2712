"""A flood of unauthenticated connections to a proxy, as a separate process (the load core's CPU, not the bench's).

    python flood.py --port P --conns 2000 --mode idle|health

``idle``: each connection sends nothing. ``health``: each sends ``GET /health`` (keep-alive) again as soon as an
answer arrives. Either way a connection the proxy closes is opened again at once, so ``--conns`` connections
are always open or being opened. Prints ``ready N`` once N connections have been opened, then runs until
SIGTERM; on exit prints ``opened N answered M``.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import signal
import sys


def raise_fd_limit() -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 16)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


async def one(port: int, mode: str, stats: dict[str, int], stop: asyncio.Event) -> None:
    request = f"GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    while not stop.is_set():
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.05)
            continue
        stats["opened"] += 1
        try:
            if mode == "idle":
                await reader.read(65536)  # returns when the proxy closes it
            else:
                while not stop.is_set():
                    writer.write(request)
                    data = await reader.read(65536)
                    if not data:
                        break
                    stats["answered"] += 1
        except OSError:
            pass
        finally:
            writer.close()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--conns", type=int, default=2000)
    parser.add_argument("--mode", choices=("idle", "health"), default="idle")
    args = parser.parse_args()
    limit = raise_fd_limit()
    if limit < args.conns + 64:
        sys.exit(f"flood: RLIMIT_NOFILE is {limit}, too low for {args.conns} connections (ulimit -n)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    stats = {"opened": 0, "answered": 0}
    tasks = [asyncio.ensure_future(one(args.port, args.mode, stats, stop)) for _ in range(args.conns)]
    while stats["opened"] < args.conns and not stop.is_set():
        await asyncio.sleep(0.05)
    print(f"ready {stats['opened']}", flush=True)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"opened {stats['opened']} answered {stats['answered']}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
