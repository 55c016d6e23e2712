"""The env contract: the variables that send any tool through cordon and make it trust cordon's CA,
plus cordon's dummy key in the well-known key variable of every routed provider (so a real key from the
shell never reaches the agent; the proxy injects the real one).

Pure: a function of the scope's paths, the port, the client token and the routed hosts; reads nothing from
disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from urllib.parse import quote

from cordon_config.noproxy import bypasses
from cordon_config.providers import DUMMY_KEY, key_variables
from cordon_config.scope import ScopePaths
from cordon_config.tokens import proxy_user

__all__ = ["env_contract", "listener_env", "no_proxy_for", "proxy_url"]

from cordon_setup.nodehook import hook_path, node_options

NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")
BUNDLE_NAMES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")


def proxy_url(namespace: str, port: int, token: str) -> str:
    """``http://<namespace>:<token>@127.0.0.1:<port>``, the userinfo percent-encoded (RFC 3986), so a project
    directory named ``My Project`` or ``a@b:c`` gives a URL every client parses. The user part is
    :func:`~cordon_config.tokens.proxy_user` (plain ASCII whatever the directory is called)."""
    if not token:
        raise ValueError("the proxy URL needs a token")
    return f"http://{quote(proxy_user(namespace), safe='')}:{quote(token, safe='')}@127.0.0.1:{port}"


def no_proxy_for(routed_hosts: Iterable[str]) -> str:
    """``localhost,127.0.0.1,::1`` without the hosts that have a route: a routed host must reach the proxy."""
    hosts = list(routed_hosts)
    return ",".join(entry for entry in NO_PROXY.split(",") if not any(bypasses(entry, h) for h in hosts))


def env_contract(
    paths: ScopePaths,
    port: int,
    token: str,
    *,
    ca_cert: Path | None = None,
    routed_hosts: Iterable[str] = (),
) -> dict[str, str]:
    """Every variable of the env contract, in a stable order.

    ``ca_cert`` overrides the CA file for ``NODE_EXTRA_CA_CERTS`` (a cordon.toml may point elsewhere);
    by default it is the scope's ``certs/ca-cert.pem``. ``routed_hosts`` are left out of ``NO_PROXY``, and each
    routed provider's key variables (``cordon_config.providers``) get :data:`DUMMY_KEY`.
    """
    url = proxy_url(paths.namespace, port, token)
    routed_hosts = tuple(routed_hosts)
    no_proxy = no_proxy_for(routed_hosts)
    env: dict[str, str] = {}
    for name in PROXY_NAMES:
        env[name] = url
    for name in NO_PROXY_NAMES:
        env[name] = no_proxy
    bundle = str(paths.combined_bundle)
    for name in BUNDLE_NAMES:
        env[name] = bundle
    env["NODE_EXTRA_CA_CERTS"] = str(ca_cert if ca_cert is not None else paths.ca_cert)
    env["NODE_USE_ENV_PROXY"] = "1"
    env["NODE_OPTIONS"] = node_options(hook_path(paths))
    for name in sorted(key_variables(routed_hosts)):
        env[name] = DUMMY_KEY
    return env


def listener_env(port: int, username: str, token: str | None) -> dict[str, str]:
    """The libpq variables that point a PostgreSQL client at a cordon listener: ``PGHOST``, ``PGPORT``,
    ``PGUSER``, and the proxy token as ``PGPASSWORD`` when tokens are on (never the database password)."""
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": username}
    if token:
        env["PGPASSWORD"] = token
    return env
