"""Check each listener without serving it: its port is free or held by the running cordon, and its upstream is
reachable and (under ``verify-full``) presents a certificate valid for its name from a trusted CA.

Used by ``cordon-pg check`` and, through the entry-point group ``cordon.doctor_checks``, by ``cordon doctor``
(which imports no cordon-pg code). A finding is ``{"check", "status" (ok|warn|fail), "message", "fix"}``.
The secret of each listener is ``cordon doctor``'s secrets check (the same as the routes').
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import Mapping
from typing import Any

from cordon_config import Config, Listener

from cordon_pg import protocol as pq

__all__ = ["check_listener", "check_listeners", "doctor_findings"]

Finding = dict[str, Any]
TIMEOUT = 5.0


def _finding(check: str, status: str, message: str, fix: str | None = None) -> Finding:
    return {"check": check, "status": status, "message": message, "fix": fix}


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def check_port(listener: Listener, proxy_running: bool, scope_flag: str = "") -> Finding:
    """Free, or held while this scope's cordon runs (then it is the listener), else something else has it."""
    check = f"listener.{listener.name}.port"
    if not _port_in_use(listener.port):
        return _finding(check, "ok", f"127.0.0.1:{listener.port} is free (cordon start will listen there)")
    if proxy_running:
        return _finding(check, "ok", f"127.0.0.1:{listener.port} is held by the running cordon")
    return _finding(check, "fail", f"something that is not cordon listens on 127.0.0.1:{listener.port}",
                    f"find it with `ss -ltnp 'sport = :{listener.port}'` and stop it, or move the listener: "
                    f"cordon listener edit{scope_flag} {listener.name} --port N")


async def _probe(listener: Listener, config: Config) -> Finding:
    from cordon_proxy.upstream import Resolver, UpstreamError

    from cordon_pg.tls import upstream_context

    check = f"listener.{listener.name}.upstream"
    host, port = listener.upstream_host, listener.upstream_port
    try:
        async with asyncio.timeout(TIMEOUT):
            addresses = await Resolver().resolve(host, port)
    except (UpstreamError, TimeoutError) as exc:
        return _finding(check, "fail", f"{listener.upstream} does not resolve: {getattr(exc, 'message', exc)}",
                        "check upstream in cordon.toml and your DNS")
    reasons = []
    for address in addresses:
        try:
            async with asyncio.timeout(TIMEOUT):
                reader, writer = await asyncio.open_connection(str(address), port)
        except (OSError, TimeoutError) as exc:
            reasons.append(f"{address}: {getattr(exc, 'strerror', None) or type(exc).__name__}")
            continue
        try:
            if listener.upstream_tls == "disable":
                return _finding(check, "warn", f"{listener.upstream} ({address}) is reachable over plain TCP "
                                '(upstream_tls = "disable": the session and password travel unencrypted)',
                                f'use upstream_tls = "verify-full" unless {host} is on a network you trust')
            return await _tls(check, listener, config, reader, writer, upstream_context(config.tls.upstream_ca_file),
                              str(address))
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
    return _finding(check, "fail", f"{listener.upstream} is unreachable: {'; '.join(reasons) or 'no address'}",
                    "is the server running and reachable from this machine?")


async def _tls(check: str, listener: Listener, config: Config, reader: asyncio.StreamReader,
               writer: asyncio.StreamWriter, ctx: ssl.SSLContext, address: str) -> Finding:
    from cordon_pg.tls import binding_of

    try:
        async with asyncio.timeout(TIMEOUT):
            writer.write(pq.ssl_request())
            answer = await reader.read(1)
            if answer != b"S":
                return _finding(check, "fail", f"{listener.upstream} does not offer TLS (answered {answer!r} to "
                                "the SSLRequest)", 'enable ssl on the server, or set upstream_tls = "disable" '
                                "(plain TCP, only on a network you trust)")
            await writer.start_tls(ctx, server_hostname=listener.upstream_host)
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or "certificate verify failed"
        return _finding(check, "fail", f"{listener.upstream}: certificate verify failed: {reason}",
                        f"the server's certificate must be valid for {listener.upstream_host} and issued by a CA in "
                        "the system store or [tls] upstream_ca_file")
    except (OSError, ssl.SSLError, TimeoutError) as exc:
        return _finding(check, "fail", f"{listener.upstream}: TLS handshake failed: {exc}",
                        "check that upstream names a PostgreSQL server with ssl = on")
    ssl_object = writer.get_extra_info("ssl_object")
    cert = ssl_object.getpeercert() if ssl_object is not None else {}
    until = cert.get("notAfter", "?")
    with contextlib.suppress(ValueError, TypeError):
        until = dt.datetime.fromtimestamp(ssl.cert_time_to_seconds(until), dt.UTC).strftime("%Y-%m-%d")
    binding = "channel binding available" if binding_of(ssl_object) else "no channel binding"
    return _finding(check, "ok", f"{listener.upstream} ({address}): TLS verified for {listener.upstream_host}, "
                    f"certificate valid until {until} ({binding})")


def check_listener(listener: Listener, config: Config, *, proxy_running: bool, scope_flag: str = "") -> list[Finding]:
    """The port and upstream findings of one listener."""
    return [check_port(listener, proxy_running, scope_flag), asyncio.run(_probe(listener, config))]


def check_listeners(config: Config, *, proxy_running: bool, names: list[str] | None = None,
                    scope_flag: str = "") -> list[Finding]:
    """Findings for every listener (or those in ``names``)."""
    found: list[Finding] = []
    for listener in config.listeners:
        if names and listener.name not in names:
            continue
        found += check_listener(listener, config, proxy_running=proxy_running, scope_flag=scope_flag)
    return found


def doctor_findings(config: Config, *, proxy_running: bool, scope_flag: str = "",
                    environ: Mapping[str, str] | None = None) -> list[Finding]:
    """The ``cordon.doctor_checks`` hook: what ``cordon doctor`` reports for the listeners."""
    del environ
    return check_listeners(config, proxy_running=proxy_running, scope_flag=scope_flag)
