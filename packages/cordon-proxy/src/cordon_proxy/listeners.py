"""Listeners served beside the HTTP proxy, in its process and event loop (``[[listeners]]`` in cordon.toml).

cordon-proxy does not know any listener protocol: each runner is found through the entry-point group
``cordon.listeners`` (cordon-pg registers PostgreSQL's) and called as ``await runner(context)``, returning an
object with ``async close()`` (or None when the config has nothing for it). A runner that cannot start raises
:class:`ListenerStartError`; ``cordon start`` prints it and exits 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["GROUP", "ListenerContext", "ListenerStartError", "start_listeners", "stop_listeners"]

GROUP = "cordon.listeners"


class ListenerStartError(Exception):
    """A listener could not start: ``message`` and ``hint`` are one line each."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


@dataclass(frozen=True, slots=True)
class ListenerContext:
    """What a runner gets: the config and scope, the proxy's logger and secret cache (listeners share the TTL
    and drop-on-failure), its token check (None when tokens are off) and the scope's CA (None without TLS)."""

    config: Any  # cordon_config.Config
    paths: Any  # cordon_config.scope.ScopePaths
    logger: Any  # cordon_proxy.logs.Logger
    secrets: Any  # cordon_config.secrets.SecretCache
    verify_token: Callable[[str], str | None] | None
    ca: Any  # cordon_ca.CertificateAuthority | None


def _runners() -> list[tuple[str, Any]]:
    from importlib.metadata import entry_points

    return [(entry.name, entry.load()) for entry in entry_points(group=GROUP)]


async def start_listeners(context: ListenerContext) -> list[Any]:
    """Start every runner; raise :class:`ListenerStartError` (after closing those already started)."""
    if not context.config.listeners:
        return []
    try:
        runners = _runners()
    except Exception as exc:  # a broken install: name it, do not crash
        raise ListenerStartError(f"cannot load the listener runners: {exc}", "reinstall cordon") from None
    if not runners:
        raise ListenerStartError("cordon.toml has [[listeners]] but no listener runner is installed",
                                 "install cordon-pg (pip install cordon-pg), or remove the [[listeners]] tables")
    services: list[Any] = []
    try:
        for _name, runner in runners:
            service = await runner(context)
            if service is not None:
                services.append(service)
    except BaseException:
        await stop_listeners(services)
        raise
    return services


async def stop_listeners(services: list[Any]) -> None:
    """Close every started listener service."""
    for service in services:
        await service.close()
