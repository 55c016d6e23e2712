"""``cordon start``'s PostgreSQL runner (entry-point group ``cordon.listeners``): bind every listener.

Called once in the proxy's event loop with a :class:`cordon_proxy.listeners.ListenerContext`. Secrets were
checked by ``cordon start`` already; here the ports are bound (a taken port is an error naming it) and the
shared pieces made once: the upstream TLS context, cordon's client-side certificate, the token check.
"""

from __future__ import annotations

import errno
from typing import Any

from cordon_proxy.listeners import ListenerContext, ListenerStartError

__all__ = ["PgListeners", "serve_listeners"]


class PgListeners:
    """The running PostgreSQL listeners of one proxy."""

    def __init__(self, servers: list[Any]) -> None:
        self.servers = servers

    async def close(self) -> None:
        for server in self.servers:
            await server.close()


async def serve_listeners(context: ListenerContext) -> PgListeners | None:
    """Bind 127.0.0.1:port for each ``[[listeners]]`` entry; raise ListenerStartError on failure."""
    from cordon_ca import CAError

    from cordon_pg.server import ListenerServer, Shared
    from cordon_pg.tls import ClientTLS, upstream_context
    from cordon_pg.tokens import ProxyTokens

    config = context.config
    if not config.listeners:
        return None
    try:
        upstream_ctx = upstream_context(config.tls.upstream_ca_file)
    except (OSError, ValueError) as exc:
        raise ListenerStartError(f"cannot load [tls] upstream_ca_file {config.tls.upstream_ca_file}: {exc}") from None
    client_tls = None
    if any(listener.client_tls != "disable" for listener in config.listeners):
        if context.ca is None:
            raise ListenerStartError("listeners offer TLS to clients but no CA is loaded",
                                     'run `cordon setup`, or set client_tls = "disable" on the listeners')
        try:
            client_tls = ClientTLS(context.ca)
        except CAError as exc:
            raise ListenerStartError(exc.message, exc.hint) from None
    tokens = None
    if context.verify_token is not None:
        tokens = ProxyTokens(context.paths.tokens_path, context.paths.namespace, context.verify_token)
    shared = Shared(config=config, logger=context.logger, secrets=context.secrets, upstream_ctx=upstream_ctx,
                    client_tls=client_tls, tokens=tokens)
    servers: list[ListenerServer] = []
    try:
        for listener in config.listeners:
            server = ListenerServer(listener, shared)
            try:
                await server.start()
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ListenerStartError(
                        f'port {listener.port} on 127.0.0.1 (listener "{listener.name}") is already in use',
                        f"stop what is using it, or change the port: cordon listener edit {listener.name} --port N",
                    ) from None
                raise ListenerStartError(f'cannot listen on 127.0.0.1:{listener.port} (listener "{listener.name}"): '
                                         f"{exc.strerror}") from None
            servers.append(server)
            context.logger.log("info", f"pg: listener {listener.name} on 127.0.0.1:{listener.port} -> "
                               f"{listener.upstream}", client_tls=listener.client_tls,
                               upstream_tls=listener.upstream_tls, user=listener.auth.username,
                               tokens="on" if tokens is not None else "off")
    except BaseException:
        for server in servers:
            await server.close()
        raise
    return PgListeners(servers)
