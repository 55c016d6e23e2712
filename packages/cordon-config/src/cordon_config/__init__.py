"""cordon-config: cordon.toml model, validation and lossless editing; scopes; secrets; proxy tokens.

Import-light on purpose: the names below are loaded on first use (PEP 562), so ``import cordon_config.scope``
(the ``--scope/--config`` helper every tool uses) costs no tomlkit, and keyring is imported only when a
keyring secret is fetched or stored.
"""

from __future__ import annotations

TYPE_CHECKING = False  # no `typing` at run time: the fast paths (cordon env) import this package
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ConfigError": "cordon_config.errors",
    "ConfigNotFound": "cordon_config.errors",
    "ConfigProblem": "cordon_config.errors",
    "ListenerNotFound": "cordon_config.errors",
    "RouteNotFound": "cordon_config.errors",
    "canonical_host": "cordon_config.hosts",
    "BasicAuth": "cordon_config.model",
    "Config": "cordon_config.model",
    "HeaderAuth": "cordon_config.model",
    "Limits": "cordon_config.model",
    "Listener": "cordon_config.model",
    "PasswordAuth": "cordon_config.model",
    "Route": "cordon_config.model",
    "SecretRef": "cordon_config.model",
    "TLSConfig": "cordon_config.model",
    "load_config": "cordon_config.parse",
    "parse_config": "cordon_config.parse",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'cordon_config' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
