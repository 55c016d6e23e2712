"""The env contract (spec §5): the variables that send any tool through cordon and make it trust cordon's CA,
plus cordon's dummy key in the well-known key variable of every routed provider (so a real key from the
shell never reaches the agent; the proxy injects the real one).

Pure: a function of the scope's paths, the port, the client token and the routed hosts; reads nothing from disk.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from cordon_config.providers import DUMMY_KEY, key_variables
from cordon_config.scope import ScopePaths

NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")
BUNDLE_NAMES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")
__all__ = ["BUNDLE_NAMES", "DUMMY_KEY", "NO_PROXY", "NO_PROXY_NAMES", "PROXY_NAMES", "env_contract", "proxy_url"]


def proxy_url(namespace: str, port: int, token: str | None) -> str:
    """``http://[<namespace>:<token>@]127.0.0.1:<port>``: the tokenised URL when a token is given."""
    if token:
        return f"http://{namespace}:{token}@127.0.0.1:{port}"
    return f"http://127.0.0.1:{port}"


def env_contract(
    paths: ScopePaths, port: int, token: str | None, *, ca_cert: Path | None = None,
    routed_hosts: Iterable[str] = (),
) -> dict[str, str]:
    """Every variable of the env contract, in a stable order.

    ``ca_cert`` overrides the CA file for ``NODE_EXTRA_CA_CERTS`` (a cordon.toml may point elsewhere);
    by default it is the scope's ``certs/ca-cert.pem``. ``routed_hosts``: each routed provider's key
    variables (``cordon_config.providers``) get :data:`DUMMY_KEY`.
    """
    url = proxy_url(paths.namespace, port, token)
    env: dict[str, str] = {}
    for name in PROXY_NAMES:
        env[name] = url
    for name in NO_PROXY_NAMES:
        env[name] = NO_PROXY
    bundle = str(paths.combined_bundle)
    for name in BUNDLE_NAMES:
        env[name] = bundle
    env["NODE_EXTRA_CA_CERTS"] = str(ca_cert if ca_cert is not None else paths.ca_cert)
    env["NODE_USE_ENV_PROXY"] = "1"
    for name in sorted(key_variables(routed_hosts)):
        env[name] = DUMMY_KEY
    return env
