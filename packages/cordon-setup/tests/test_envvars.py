from pathlib import Path

import pytest
from cordon_config.noproxy import bypasses
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


def test_a_token_is_required_and_the_ca_can_be_overridden(tmp_path):
    paths = _paths(tmp_path)
    env = env_contract(paths, 7001, "tok", ca_cert=Path("/elsewhere/ca.pem"))
    assert env["NODE_EXTRA_CA_CERTS"] == "/elsewhere/ca.pem"
    assert not any(name.startswith("CODEX_") for name in env)
    with pytest.raises(ValueError):
        proxy_url("user", 1, "")


@pytest.mark.parametrize(("namespace", "userinfo"), [
    ("proj-1a2b3c4d", "proj-1a2b3c4d"),
    ("My Project-c8ff1ac8", "My%20Project-c8ff1ac8"),
    ("a@b-1", "a%40b-1"),
    ("a:b-1", "a%253Ab-1"),  # the wire user is 'a%3Ab-1': Basic credentials cannot hold ':' in the user
    ("Projé-1", "Proj%25C3%25A9-1"),  # the wire user is ASCII 'Proj%C3%A9-1' for every client
    ("100%-1", "100%2525-1"),
])
def test_the_userinfo_is_percent_encoded(namespace: str, userinfo: str) -> None:
    from urllib.parse import unquote, urlsplit

    from cordon_config.tokens import proxy_user

    url = proxy_url(namespace, 6790, "t0k-_")
    assert url == f"http://{userinfo}:t0k-_@127.0.0.1:6790"
    parts = urlsplit(url)
    assert (parts.hostname, parts.port) == ("127.0.0.1", 6790)
    assert unquote(parts.username or "") == proxy_user(namespace)
    assert proxy_user(namespace).isascii() and ":" not in proxy_user(namespace)
    assert unquote(proxy_user(namespace)) == namespace  # git decodes twice: the namespace itself


@pytest.mark.parametrize(("routed", "no_proxy"), [
    ([], "localhost,127.0.0.1,::1"),
    (["api.openai.com"], "localhost,127.0.0.1,::1"),
    (["localhost"], "127.0.0.1,::1"),
    (["api.localhost", "127.0.0.1"], "::1"),
    (["::1", "localhost", "127.0.0.1"], ""),
])
def test_routed_hosts_are_left_out_of_no_proxy(tmp_path, routed, no_proxy) -> None:
    env = env_contract(_paths(tmp_path), 6790, "tok", routed_hosts=routed)
    assert env["NO_PROXY"] == env["no_proxy"] == no_proxy
    for host in routed:
        assert not bypasses(env["NO_PROXY"], host)


@pytest.mark.parametrize(("no_proxy", "host", "expected"), [
    ("localhost", "localhost", True),
    ("example.com", "api.example.com", True),
    (".example.com", "api.example.com", True),
    ("*.example.com", "api.example.com", True),
    ("example.com", "badexample.com", False),
    ("*", "anything.test", True),
    (" LOCALHOST ,", "localhost", True),
    ("localhost:8443", "localhost", True),
    ("[::1]", "::1", True),
    ("127.0.0.1", "127.0.0.2", False),
    ("", "localhost", False),
])
def test_bypasses_follows_the_clients_rule(no_proxy: str, host: str, expected: bool) -> None:
    assert bypasses(no_proxy, host) is expected
