from pathlib import Path

from cordon_config.scope import resolve_scope
from cordon_setup.envvars import env_contract, proxy_url


def _paths(tmp_path: Path):
    return resolve_scope(None, None, env={"XDG_CONFIG_HOME": str(tmp_path / "xdg")}, cwd=tmp_path / "proj")


def test_contract_has_every_variable_of_spec_section_5(tmp_path):
    paths = _paths(tmp_path)
    env = env_contract(paths, 6790, "tok")
    url = f"http://{paths.namespace}:tok@127.0.0.1:6790"
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        assert env[name] == url
    assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1,::1"
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "GIT_SSL_CAINFO"):
        assert env[name] == str(paths.combined_bundle)
    assert env["NODE_EXTRA_CA_CERTS"] == str(paths.ca_cert)
    assert env["NODE_USE_ENV_PROXY"] == "1"
    assert env["NODE_OPTIONS"] == f"--require {paths.state_dir / 'node' / 'cordon-register.cjs'}"
    assert len(env) == 13


def test_no_token_means_plain_url_and_ca_override(tmp_path):
    paths = _paths(tmp_path)
    env = env_contract(paths, 7001, None, ca_cert=Path("/elsewhere/ca.pem"))
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:7001"
    assert env["NODE_EXTRA_CA_CERTS"] == "/elsewhere/ca.pem"
    assert proxy_url("user", 1, "") == "http://127.0.0.1:1"
    assert not any(name.startswith("CODEX_") for name in env)
