"""A running proxy over time: built from a :class:`~cordon_proxy.runtime.Runtime`, reloaded, watching its tokens.

* :meth:`Lifecycle.reload` (SIGHUP, ``cordon reload``) loads the scope's files again off the event loop
  (:func:`~cordon_proxy.runtime.load_runtime`) and, only when all of it is good, swaps in one step the settings
  (routes, limits, token check, ``/health``), the leaf contexts, the upstream trust and the secret cache:
  new requests use them, requests in flight finish with what they started with. Anything wrong keeps the
  running configuration and says why (a log line, and ``reload_error`` in ``/health``'s verified details).
* :meth:`Lifecycle.watch_tokens` re-checks ``tokens.toml`` every :data:`~cordon_proxy.tokens.CHECK_EVERY`
  seconds and closes every connection whose token was rotated or revoked (or all of them while the file is
  readable by others); a connection that asks for more before that is refused by its session.
* :meth:`Lifecycle.health` is ``/health``'s answer (the identity proof of :mod:`cordon_config.identity`).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from cordon_config.identity import health_answer

from cordon_proxy._tasks import spawn
from cordon_proxy.core.session import Settings, SettingsRef
from cordon_proxy.runtime import LoadFailure, Runtime, load_runtime
from cordon_proxy.tokens import CHECK_EVERY, TokenGate

if TYPE_CHECKING:
    from cordon_config.scope import ScopePaths
    from cordon_config.secrets import SecretCache

    from cordon_proxy.audit import AuditLog
    from cordon_proxy.logs import Logger
    from cordon_proxy.server import Proxy

__all__ = ["Lifecycle"]


class Lifecycle:
    """The proxy of one scope, its runtime and its reloads."""

    def __init__(self, paths: ScopePaths, runtime: Runtime, *, logger: Logger, version: str,
                 audit: AuditLog | None = None) -> None:
        self.paths = paths
        self.audit = audit  # the audit log the proxy starts with ([audit] enabled; a reload may change it)
        self.runtime = runtime
        self.logger = logger
        self.version = version
        self.pid = os.getpid()
        self.reloads = 0  # reloads attempted so far (cordon reload waits for this to move)
        self.reload_error: str | None = None
        self.gate: TokenGate | None = None
        if runtime.tokens is not None:
            self.gate = TokenGate(paths.tokens_path, paths.namespace, runtime.tokens, log=self._log)
        self.settings = SettingsRef(self._settings(runtime), clock=time.monotonic)  # the rate limits' clock
        self._reloading: asyncio.Task[None] | None = None
        self._again = False  # a reload was asked for while one was running
        self._watcher: asyncio.Task[None] | None = None

    def _log(self, level: str, message: str) -> None:
        self.logger.log(level, message)

    def _settings(self, runtime: Runtime) -> Settings:
        gate = self.gate
        return Settings.from_config(
            runtime.config, version=self.version, verify_token=gate.verify if gate is not None else None,
            health=self.health, token_valid=gate.still_valid if gate is not None else None,
        )

    def proxy(self) -> Proxy:
        """The :class:`~cordon_proxy.server.Proxy` serving this runtime (one per process)."""
        from cordon_config.secrets import SecretCache

        from cordon_proxy.server import Proxy
        from cordon_proxy.upstream import Resolver, UpstreamPool

        runtime, limits = self.runtime, self.runtime.config.limits
        pool = UpstreamPool(runtime.trust.context, Resolver(), connect_timeout=limits.connect_timeout,
                            idle_timeout=min(30.0, limits.idle_timeout), cordon_context=runtime.trust.cordon)
        self._proxy = Proxy(self.settings, leaves=runtime.leaves, pool=pool,
                            secrets=SecretCache(runtime.config.secret_ttl), logger=self.logger, audit=self.audit)
        return self._proxy

    # -- /health ---------------------------------------------------------------------------------------------
    def details(self) -> Mapping[str, object]:
        """What ``/health`` tells a client that proved it holds the scope's key."""
        config = self.runtime.config
        return {
            "pid": self.pid,
            "version": self.version,
            "routes": len(config.routes),
            "config": str(config.path),
            "config_digest": self.runtime.digest,
            "port": config.listen,
            "reloads": self.reloads,
            "reload_error": self.reload_error,
        }

    def health(self, query: str) -> Mapping[str, object] | None:
        """``/health?query``'s answer (None for a malformed query)."""
        return health_answer(self.runtime.identity_key, query, self.details() if query else {})

    # -- reload ----------------------------------------------------------------------------------------------
    def request_reload(self) -> None:
        """SIGHUP: reload now, or once more after the reload that is running (signals meanwhile are folded)."""
        if self._reloading is None or self._reloading.done():
            self._reloading = spawn(self._reload_until_current(), name="cordon-reload")
        else:
            self._again = True

    async def _reload_until_current(self) -> None:
        self._again = True
        while self._again:
            self._again = False
            await self.reload()

    async def reload(self) -> bool:
        """Load everything again and swap it in; False (the running config kept, the reason logged) on any
        problem."""
        self.logger.log("info", "reloading", config=str(self.paths.config_path))
        try:
            runtime = await asyncio.to_thread(load_runtime, self.paths, self.logger)
            self._check_compatible(runtime)
        except LoadFailure as exc:
            self.reload_error = exc.summary()
            self.reloads += 1
            self.logger.log("error", f"reload refused, still running the previous config: {self.reload_error}")
            return False
        self._apply(runtime)
        self.reload_error = None
        self.reloads += 1
        self.logger.log("info", f"reloaded: {len(runtime.config.routes)} routes", config=str(runtime.config.path),
                        digest=runtime.digest)
        return True

    def _check_compatible(self, runtime: Runtime) -> None:
        before, after = self.runtime.config.listen, runtime.config.listen
        if before != after:
            raise LoadFailure([f"listen changed from {before} to {after}: a reload cannot move the proxy to "
                               "another port"], "cordon restart")
        if self.runtime.config.listeners != runtime.config.listeners:
            raise LoadFailure(["[[listeners]] changed: a reload does not restart listeners"], "cordon restart")
        if self.gate is not None and runtime.tokens is None:
            raise LoadFailure([f"{self.paths.tokens_path} is gone: proxy tokens stay on until a restart"],
                              "cordon setup   (writes it again)")

    def _apply(self, runtime: Runtime) -> None:
        """Swap everything for new requests (one step on the event loop: no request sees half of it)."""
        proxy = self._proxy
        tokens_turned_on = False
        if runtime.tokens is not None:
            if self.gate is None:
                self.gate = TokenGate(self.paths.tokens_path, self.paths.namespace, runtime.tokens, log=self._log)
                tokens_turned_on = True
            else:
                self.gate.replace(runtime.tokens)
        self.runtime = runtime
        limits = runtime.config.limits
        pool = proxy.pool
        pool.ctx, pool.cordon_context = runtime.trust.context, runtime.trust.cordon
        pool.connect_timeout, pool.idle_timeout = limits.connect_timeout, min(30.0, limits.idle_timeout)
        pool.close_all()  # idle connections were verified under the old trust
        proxy.leaves = runtime.leaves
        secrets: SecretCache = type(proxy.secrets)(runtime.config.secret_ttl)
        proxy.secrets = secrets
        self.settings.swap(self._settings(runtime))
        self._apply_audit(runtime)
        if tokens_turned_on:  # what was opened without a token may not go on now that tokens are required
            proxy.close_ended(lambda name: False, unauthenticated=True)
        elif self.gate is not None:
            proxy.close_ended(self.gate.still_valid)

    def _apply_audit(self, runtime: Runtime) -> None:
        """``[audit]`` after a reload: switched on (opened now; a failure is logged and the proxy goes on
        without), off (closed), or new rotation settings."""
        proxy, wanted = self._proxy, runtime.config.audit
        if not wanted.enabled:
            if proxy.audit is not None:
                proxy.audit.event("stop", reason="[audit] enabled = false")
                proxy.audit.close()
                proxy.audit = None
            return
        if proxy.audit is not None:
            proxy.audit.configure(wanted)
            return
        from cordon_config.audit import AuditError

        from cordon_proxy.audit import open_audit

        try:
            proxy.audit = open_audit(self.paths, wanted, self.logger)
        except AuditError as exc:
            self.logger.log("error", f"audit: {exc.message}")
            return
        proxy.audit.batch_on(asyncio.get_running_loop())
        proxy.audit.event("start", version=self.version, pid=self.pid, config=str(runtime.config.path))

    # -- tokens ----------------------------------------------------------------------------------------------
    def start_watching(self) -> None:
        """Start :meth:`watch_tokens` (when tokens are on now or may be after a reload)."""
        self._watcher = spawn(self.watch_tokens(), name="cordon-token-watch")

    async def watch_tokens(self) -> None:
        """Close the connections of ended tokens within about a second of the change."""
        seen = -1
        while True:
            await asyncio.sleep(CHECK_EVERY)
            gate = self.gate
            if gate is None:
                continue
            gate.refresh(force=True)  # a request may have noticed the change first: compare generations
            if gate.generation != seen:
                seen = gate.generation
                closed = self._proxy.close_ended(gate.still_valid)
                if closed:
                    self.logger.log("info", "closed connections of ended proxy tokens", connections=closed)

    def stop(self) -> None:
        for task in (self._watcher, self._reloading):
            if task is not None:
                task.cancel()
