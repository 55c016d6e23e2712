"""Proxy tokens: tokens.toml 0600, atomic, constant-time verify, malformed vs absent."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cordon_config.tokens import TokenError, TokenStore, parse_proxy_authorization


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_absent_file_loads_as_none(tmp_path: Path) -> None:
    assert TokenStore.load(tmp_path / "tokens.toml") is None


def test_ensure_creates_private_file_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "state" / "tokens.toml"
    store = TokenStore.open(path)
    value = store.ensure("default")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(value) == 43 and store.ensure("default") == value
    store.ensure("codex")
    loaded = TokenStore.load(path)
    assert loaded is not None and loaded.names() == ["default", "codex"]
    assert loaded.value("default") == value
    assert [info.name for info in loaded.info()] == ["default", "codex"]
    assert value not in repr(loaded)


def test_rotate_and_revoke(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    store = TokenStore.open(path)
    old = store.ensure("codex")
    new = store.rotate("codex")
    assert new != old and TokenStore.load(path).value("codex") == new  # type: ignore[union-attr]
    assert store.revoke("codex") is True and store.revoke("codex") is False
    assert TokenStore.load(path).names() == []  # type: ignore[union-attr]
    with pytest.raises(TokenError):
        store.value("codex")
    with pytest.raises(TokenError):
        store.ensure("Bad Name")


def test_two_stores_do_not_lose_each_others_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first, second = TokenStore.open(path), TokenStore.open(path)
    first.ensure("a")
    second.ensure("b")
    assert TokenStore.load(path).names() == ["a", "b"]  # type: ignore[union-attr]


def test_verify(tmp_path: Path) -> None:
    store = TokenStore.open(tmp_path / "tokens.toml")
    default = store.ensure("default")
    codex = store.ensure("codex")
    assert store.verify(basic("ns-1234", default), "ns-1234") == "default"
    assert store.verify(basic("ns-1234", codex), "ns-1234") == "codex"
    assert store.verify("basic " + basic("ns-1234", codex)[6:], "ns-1234") == "codex"
    assert store.verify(basic("other", codex), "ns-1234") is None
    assert store.verify(basic("ns-1234", codex + "x"), "ns-1234") is None
    assert store.verify(basic("ns-1234", ""), "ns-1234") is None
    for bad in (None, "", "Bearer abc", "Basic", "Basic !!!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        assert store.verify(bad, "ns-1234") is None


def test_parse_proxy_authorization() -> None:
    assert parse_proxy_authorization(basic("u", "p:q")) == ("u", "p:q")
    assert parse_proxy_authorization(None) is None
    assert parse_proxy_authorization("Basic a b") is None
    assert parse_proxy_authorization("Basic " + base64.b64encode(b"\xff:x").decode()) is None


def test_invalid_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text("[tokens\n")
    path.chmod(0o600)
    with pytest.raises(TokenError, match="not valid TOML"):
        TokenStore.load(path)
    path.write_text("[tokens.a]\ncreated = 2026-01-01T00:00:00Z\n")
    with pytest.raises(TokenError, match="has no value"):
        TokenStore.load(path)


def test_group_readable_file_is_refused_until_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    store = TokenStore.open(path)
    value = store.ensure("default")
    path.chmod(0o644)
    with pytest.raises(TokenError) as caught:
        TokenStore.load(path)
    assert "mode 0644" in str(caught.value) and "chmod 600" in str(caught.value) and value not in str(caught.value)
    TokenStore.open(path).rotate("default")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert TokenStore.load(path).names() == ["default"]  # type: ignore[union-attr]


@pytest.mark.parametrize("namespace", ["proj-1a2b3c4d", "My Project-c8ff1ac8", "Projé-1", "a@b:c-1", "100%-1"])
def test_the_namespace_is_accepted_as_every_client_sends_it(tmp_path, namespace: str) -> None:
    """curl, Python and Node send the user part of the proxy URL decoded once (the encoded form for awkward
    names), git decodes twice (the namespace itself); a ':' in the user is fine (tokens never hold one)."""
    import base64
    from urllib.parse import quote

    from cordon_config.tokens import proxy_user

    store = TokenStore.open(tmp_path / "tokens.toml")
    token = store.ensure("default")

    def header(user: str, password: str = token) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    assert store.verify(header(namespace), namespace) == "default"
    assert store.verify(header(proxy_user(namespace)), namespace) == "default"
    assert store.verify(header(namespace + "x"), namespace) is None
    assert store.verify(header(quote(namespace + "x", safe="")), namespace) is None
    assert store.verify(header(namespace, token + "x"), namespace) is None
