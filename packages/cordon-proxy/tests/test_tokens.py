"""TokenGate: proxy tokens follow tokens.toml while the proxy runs."""

from __future__ import annotations

import base64
from pathlib import Path

from cordon_config.tokens import TokenStore
from cordon_proxy.tokens import TokenGate


def header(namespace: str, token: str) -> str:
    return "Basic " + base64.b64encode(f"{namespace}:{token}".encode()).decode()


def test_rotation_is_picked_up_and_deletion_keeps_the_last_tokens(tmp_path: Path) -> None:
    path = tmp_path / "tokens.toml"
    first = TokenStore.open(path).ensure("codex")
    store = TokenStore.load(path)
    assert store is not None
    gate = TokenGate(path, "ns", store, check_every=0)
    assert gate.verify(header("ns", first)) == "codex"
    assert gate.verify(header("other-ns", first)) is None
    assert gate.verify("Basic !!!") is None
    second = TokenStore.open(path).rotate("codex")
    assert gate.verify(header("ns", second)) == "codex"
    assert gate.verify(header("ns", first)) is None
    path.unlink()
    assert gate.verify(header("ns", second)) == "codex"  # deleting the file does not reopen routed hosts
    assert gate.verify(header("ns", "")) is None
