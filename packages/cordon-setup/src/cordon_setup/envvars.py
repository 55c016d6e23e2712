"""The env contract (spec §5): the variables that send any tool through cordon and make it trust cordon's CA.

Pure: a function of the scope's paths, the port and the client token; reads nothing from disk.
"""

from __future__ import annotations

from pathlib import Path

from cordon_config.scope import ScopePaths

NO_PROXY = "localhost,127.0.0.1,::1"
PROXY_NAMES = ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
NO_PROXY_NAMES = ("NO_PROXY", "no_proxy")
BUNDLE_NAMES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO")
DUMMY_KEY = "dummy-replaced-by-cordon"


def proxy_url(namespace: str, port: int, token: str | None) -> str:
    """``http://[<namespace>:<token>@]127.0.0.1:<port>``: the tokenised URL when a token is given."""
    if token:
        return f"http://{namespace}:{token}@127.0.0.1:{port}"
    return f"http://127.0.0.1:{port}"


def env_contract(
    paths: ScopePaths, port: int, token: str | None, *, ca_cert: Path | None = None
) -> dict[str, str]:
    """Every variable of the env contract, in a stable order.

    ``ca_cert`` overrides the CA file for ``NODE_EXTRA_CA_CERTS`` (a cordon.toml may point elsewhere);
    by default it is the scope's ``certs/ca-cert.pem``.
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
    return env


def listener_env(port: int, username: str, token: str | None) -> dict[str, str]:
    """The libpq variables that point a PostgreSQL client at a cordon listener: ``PGHOST``, ``PGPORT``,
    ``PGUSER``, and the proxy token as ``PGPASSWORD`` when tokens are on (never the database password)."""
    env = {"PGHOST": "127.0.0.1", "PGPORT": str(port), "PGUSER": username}
    if token:
        env["PGPASSWORD"] = token
    return env
