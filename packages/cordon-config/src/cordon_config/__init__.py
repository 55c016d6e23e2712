"""cordon-config: cordon.toml model, validation and lossless editing; scopes; secrets; proxy tokens.

Import-light on purpose: keyring is imported only when a keyring secret is fetched or stored.
"""

from cordon_config.errors import ConfigError, ConfigNotFound, ConfigProblem, RouteNotFound
from cordon_config.hosts import canonical_host
from cordon_config.model import BasicAuth, Config, HeaderAuth, Limits, Route, SecretRef, TLSConfig
from cordon_config.parse import load_config, parse_config

__version__ = "0.1.0"

__all__ = [
    "BasicAuth",
    "Config",
    "ConfigError",
    "ConfigNotFound",
    "ConfigProblem",
    "HeaderAuth",
    "Limits",
    "Route",
    "RouteNotFound",
    "SecretRef",
    "TLSConfig",
    "canonical_host",
    "load_config",
    "parse_config",
]
