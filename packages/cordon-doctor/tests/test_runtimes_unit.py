"""The pure parts of `doctor --runtimes`: Node version rules and the probe environment."""

from __future__ import annotations

import pytest
from cordon_doctor.runtimes import node_honours_env_proxy, node_version_tuple, probe_environment


@pytest.mark.parametrize(
    ("version", "fetch", "https"),
    [("v20.20.2", False, False), ("v22.20.0", False, False), ("v22.21.0", True, True), ("v23.11.0", False, False),
     ("v24.0.0", True, False), ("v24.5.0", True, True), ("v25.1.0", True, True), ("garbage", False, False)],
)
def test_node_env_proxy_support(version: str, fetch: bool, https: bool) -> None:
    vt = node_version_tuple(version)
    assert node_honours_env_proxy(vt, https_module=False) is fetch
    assert node_honours_env_proxy(vt, https_module=True) is https


def test_probe_environment_replaces_proxy_vars_with_the_contract() -> None:
    base = {"PATH": "/bin", "HTTPS_PROXY": "http://elsewhere:1", "NODE_TLS_REJECT_UNAUTHORIZED": "0",
            "NO_PROXY": "localhost"}
    contract = {"HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": "127.0.0.1,::1", "no_proxy": "127.0.0.1,::1"}
    env = probe_environment(base, contract)
    assert env["HTTPS_PROXY"] == "http://127.0.0.1:9" and env["PATH"] == "/bin"
    assert env["NO_PROXY"] == env["no_proxy"] == "127.0.0.1,::1"
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in env


def test_node_without_env_proxy_support_is_not_told_to_set_what_is_set() -> None:
    from cordon_doctor.runtimes import no_env_proxy_fix

    old = no_env_proxy_fix(node_honours_env_proxy(node_version_tuple("v20.20.2"), https_module=False), "v20.20.2")
    assert not old.startswith("set NODE_USE_ENV_PROXY=1") and "upgrade Node" in old and "v20.20.2" in old
    new = no_env_proxy_fix(node_honours_env_proxy(node_version_tuple("v22.21.0"), https_module=False), "v22.21.0")
    assert new.startswith("set NODE_USE_ENV_PROXY=1")
