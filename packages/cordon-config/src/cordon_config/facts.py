"""The few facts of a cordon.toml that tools need without validating the whole file: the listen port, the CA
paths, the routed hosts and the listeners.

Read with ``tomllib`` alone, so a route still being edited cannot stop ``cordon env``, ``cordon status``,
``cordon setup`` or ``cordon ca``: a route or listener whose values have the wrong type is passed over (the
validator reports it). Only what a caller cannot do without is an error (:class:`FactsError`, one line): a file
that is not TOML, a ``[tls]`` that is not a table or a CA path that is not a string; a ``listen`` that is not a
port is one only for the callers that ask for the port (:meth:`ConfigFacts.port`). The one reader for cordon-ca's CLI, cordon-setup and the proxy's ``status``/``wait``/``stop``.

:func:`approved_hosts` is the one rule for the hosts a name-constrained CA permits: each route host that the
scope's approval record names for that route (an agent's new route, or a route it pointed elsewhere, is not
one), and ``localhost`` while a listener offers TLS to its clients. Stdlib only.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cordon_config.hosts import canonical_host

if TYPE_CHECKING:
    from cordon_config.scope import ScopePaths

DEFAULT_LISTEN = 6790  # the port of a new scope's proxy, and `listen`'s suggested value

__all__ = ["DEFAULT_LISTEN", "ConfigFacts", "FactsError", "approved_hosts", "listen_of", "read_document", "read_facts"]


class FactsError(ValueError):
    """cordon.toml cannot give a fact its caller needs (one line naming the file)."""


@dataclass(frozen=True, slots=True)
class ConfigFacts:
    """What :func:`read_facts` found: ``listen`` (the default port when absent; when it is not a port,
    ``listen_error`` says why and :meth:`port` raises it), the CA paths (absolute; the scope's when unset),
    ``[tls] name_constraints`` (None when unset), each route as (name, canonical host) and the listeners
    (name → (port, username))."""

    path: Path
    listen: int
    ca_cert: Path
    ca_key: Path
    name_constraints: bool | None = None
    route_hosts: tuple[tuple[str, str], ...] = ()
    listener_tls: bool = False  # a [[listeners]] entry offers TLS to clients: the CA must permit localhost too
    listeners: dict[str, tuple[int, str]] = field(default_factory=dict)
    listen_error: str | None = None  # why ``listen`` is not a port, when it is present and is not

    def port(self) -> int:
        """``listen``; :class:`FactsError` when the file's ``listen`` is not a port."""
        if self.listen_error is not None:
            raise FactsError(self.listen_error)
        return self.listen

    @property
    def routes(self) -> dict[str, str]:
        """Routed host → the name of its first route."""
        found: dict[str, str] = {}
        for name, host in self.route_hosts:
            found.setdefault(host, name)
        return found


def read_document(config_path: Path) -> dict[str, Any] | None:
    """cordon.toml as plain TOML, None when the file does not exist; :class:`FactsError` when unreadable."""
    try:
        data = Path(config_path).read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FactsError(f"cannot read {config_path}: {exc.strerror}") from None
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise FactsError(f"{config_path}:{line}: not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise FactsError(f"{config_path} is not valid TOML: {exc}") from None


def listen_of(doc: dict[str, Any], config_path: Path) -> int | None:
    """``listen`` of a read document: None when absent, :class:`FactsError` when it is not a port."""
    listen = doc.get("listen")
    if listen is None:
        return None
    if isinstance(listen, bool) or not isinstance(listen, int) or not 1 <= listen <= 65535:
        raise FactsError(f"{config_path}: listen must be a port number 1-65535, not {listen!r}")
    return listen


def _ca_path(tls: dict[str, Any], key: str, config_path: Path, default: Path) -> Path:
    value = tls.get(key)
    if value is None:
        return default
    if not isinstance(value, str) or not value or "\0" in value:
        raise FactsError(f"{config_path}: [tls] {key} must be a non-empty string path")
    return Path(os.path.normpath(config_path.parent / value))


def _route_hosts(doc: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    routes = doc.get("routes")
    found = []
    for route in routes if isinstance(routes, list) else []:
        match = route.get("match") if isinstance(route, dict) else None
        host = match.get("host") if isinstance(match, dict) else None
        if not isinstance(host, str):
            continue
        try:
            found.append((str(route.get("name", "?")), canonical_host(host)))
        except ValueError:  # not a name a certificate or a route can hold: the validator reports it
            continue
    return tuple(found)


def read_facts(paths: ScopePaths, *, default_listen: int = DEFAULT_LISTEN) -> ConfigFacts | None:
    """The facts of the scope's cordon.toml, None when it does not exist (see the module docstring);
    ``default_listen`` stands for a missing or wrong ``listen``."""
    config_path = Path(os.path.abspath(paths.config_path))
    doc = read_document(config_path)
    if doc is None:
        return None
    tls = doc.get("tls", {})
    if not isinstance(tls, dict):
        raise FactsError(f"{config_path}: [tls] must be a table")
    setting = tls.get("name_constraints")
    listeners_value = doc.get("listeners")
    listeners: list[Any] = listeners_value if isinstance(listeners_value, list) else []
    named: dict[str, tuple[int, str]] = {}
    for item in listeners:
        auth = item.get("auth") if isinstance(item, dict) else None
        if not isinstance(auth, dict):
            continue
        port, user = item.get("port"), auth.get("username")
        if isinstance(item.get("name"), str) and isinstance(port, int) and isinstance(user, str):
            named[item["name"]] = (port, user)
    listen, listen_error = default_listen, None
    try:
        listen = listen_of(doc, config_path) or default_listen
    except FactsError as exc:
        listen_error = str(exc)
    return ConfigFacts(
        path=config_path,
        listen=listen,
        listen_error=listen_error,
        ca_cert=_ca_path(tls, "ca_cert_path", config_path, paths.ca_cert),
        ca_key=_ca_path(tls, "ca_key_path", config_path, paths.ca_key),
        name_constraints=setting if isinstance(setting, bool) else None,
        route_hosts=_route_hosts(doc),
        listener_tls=any(isinstance(item, dict) and item.get("client_tls", "accept") != "disable"
                         for item in listeners),
        listeners=named,
    )


def approved_hosts(facts: ConfigFacts, paths: ScopePaths) -> list[str]:
    """The hosts a name-constrained CA of this scope permits, sorted: every route host that the scope's
    approval record names for that route, and ``localhost`` while a listener offers TLS to its clients. A
    missing or unverifiable record approves no host."""
    from cordon_config.approvals import approved_items

    items = approved_items(paths, facts.path)
    hosts = {host for name, host in facts.route_hosts if items.get(f"route:{name}", {}).get("host") == host}
    if facts.listener_tls:
        hosts.add("localhost")
    return sorted(hosts)
