"""Proxy identity: the key file, the /health exchange, and probe() against real listeners on loopback.

Each listener here is a real socket on 127.0.0.1: a squatter answering like an old cordon, something that
speaks no HTTP, and a stand-in "proxy" that answers with cordon_config.identity's own health_answer under
some scope's key (the real proxy's side is covered end to end in tests/e2e/test_security_identity.py).
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cordon_config import identity
from cordon_config.identity import (
    IdentityError,
    client_auth,
    ensure_key,
    health_answer,
    key_path,
    load_key,
    new_nonce,
    probe,
    server_proof,
)
from cordon_config.scope import ScopePaths, resolve_scope
from cordon_config.scopes import record_scope

DETAILS = {"pid": 4242, "version": "9.9", "routes": 2, "config": "/x/cordon.toml", "config_digest": "sha256:ab"}


def _paths(tmp_path: Path, name: str) -> ScopePaths:
    project = tmp_path / name
    project.mkdir(exist_ok=True)
    return resolve_scope(None, None, env=dict(os.environ), cwd=project)


# -- the key ------------------------------------------------------------------------------------------------


def test_key_is_made_once_0600_and_reused(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    assert load_key(paths) is None
    key = ensure_key(paths)
    assert len(key) == 32 and ensure_key(paths) == key == load_key(paths)
    assert key_path(paths).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_key_others_could_read_is_refused_not_tightened(tmp_path: Path, mode: int) -> None:
    """A key that was readable by others may have been copied, and a copy passes the proof: a chmod would not
    undo that, so the key is refused (with how to replace it), and left as it is."""
    paths = _paths(tmp_path, "a")
    key = ensure_key(paths)
    key_path(paths).chmod(mode)
    for call in (load_key, ensure_key):
        with pytest.raises(IdentityError) as info:
            call(paths)
        assert info.value.message == (f"{key_path(paths)} is accessible by group or others (mode {mode:04o}); a copy "
                                      "of it would pass as this scope's cordon")
        assert info.value.hint == (f"replace it: stop this scope's cordon, rm {key_path(paths)}, and start it "
                                   "again (cordon start makes a new key)")
    assert key_path(paths).stat().st_mode & 0o777 == mode and key_path(paths).read_bytes() == key


def test_a_symlinked_or_wrong_sized_key_is_refused(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    paths.state_dir.mkdir(parents=True)
    target = tmp_path / "elsewhere"
    target.write_bytes(b"k" * 32)
    key_path(paths).symlink_to(target)
    with pytest.raises(IdentityError):
        ensure_key(paths)
    key_path(paths).unlink()
    key_path(paths).write_bytes(b"short")
    with pytest.raises(IdentityError) as info:
        load_key(paths)
    assert f"rm {key_path(paths)}" in (info.value.hint or "")


# -- the proxy's answer -------------------------------------------------------------------------------------


def test_health_answer_says_only_ok_without_a_nonce_and_details_only_to_the_key_holder() -> None:
    key, other = os.urandom(32), os.urandom(32)
    nonce = new_nonce()
    assert health_answer(key, "", DETAILS) == {"status": "ok"}
    assert health_answer(key, f"nonce={nonce}", DETAILS) == {"status": "ok", "proof": server_proof(key, nonce)}
    wrong = health_answer(key, f"nonce={nonce}&auth={client_auth(other, nonce)}", DETAILS)
    assert wrong == {"status": "ok", "proof": server_proof(key, nonce)}
    right = health_answer(key, f"nonce={nonce}&auth={client_auth(key, nonce)}", DETAILS)
    assert right == {"status": "ok", "proof": server_proof(key, nonce), **DETAILS}
    assert server_proof(key, nonce) != client_auth(key, nonce)  # a client's auth is no proof, and vice versa


@pytest.mark.parametrize("query", ["nonce=abc", "nonce=" + "g" * 64, "x=1", "nonce=" + "a" * 64 + "&nonce=" + "b" * 64,
                                   "nonce=" + "a" * 64 + "&auth=1&auth=2", "&&&"])
def test_health_answer_refuses_a_malformed_query(query: str) -> None:
    assert health_answer(os.urandom(32), query, DETAILS) is None


# -- probe against real listeners ---------------------------------------------------------------------------


@contextmanager
def listener(answer: Callable[[bytes], bytes | None]) -> Iterator[int]:
    """A real listener on 127.0.0.1: reads one request head, writes ``answer(head)``, closes."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                reply = answer(head)
                if reply is not None:
                    conn.sendall(reply)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        server.close()


def http_json(doc: dict[str, object]) -> bytes:
    body = json.dumps(doc).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def stand_in(key: bytes, details: dict[str, object]) -> Callable[[bytes], bytes | None]:
    """Answers /health as the proxy does, with ``key``."""

    def answer(head: bytes) -> bytes:
        target = head.split(b" ", 2)[1].decode()
        doc = health_answer(key, target.partition("?")[2], details)
        assert doc is not None
        return http_json(doc)

    return answer


def test_nothing_listening_is_none(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert probe(_paths(tmp_path, "a"), port).kind == "none"


def test_a_squatter_answering_ok_is_foreign_and_named_by_its_process(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    ensure_key(paths)
    seen: list[bytes] = []

    def squat(head: bytes) -> bytes:
        seen.append(head)
        return http_json({"status": "ok", "version": "0.1.0", "routes": 1})

    with listener(squat) as port:
        state = probe(paths, port)
    assert state.kind == "foreign" and not state.ours
    assert state.owner is not None and state.owner.startswith(f"pid {os.getpid()}")  # this test process
    assert state.message().startswith(f"port {port} is held by something that is not this scope's cordon (pid ")
    assert b"proxy-authorization" not in seen[0].lower()  # never a token
    assert b"auth=" in seen[0]  # a nonce-bound MAC, useless to the squatter for anything else


def test_something_that_speaks_no_http_is_foreign(tmp_path: Path) -> None:
    with listener(lambda head: b"SSH-2.0-OpenSSH\r\n") as port:
        state = probe(_paths(tmp_path, "a"), port)
    assert state.kind == "foreign" and "no HTTP answer" in state.detail


def test_a_proof_under_this_scopes_key_is_ours_with_details(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    key = ensure_key(paths)
    with listener(stand_in(key, DETAILS)) as port:
        state = probe(paths, port)
    assert state.ours and state.pid == 4242 and state.health["config_digest"] == "sha256:ab"


def test_a_relay_to_this_scopes_cordon_on_another_port_is_not_ours(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    key = ensure_key(paths)
    with listener(stand_in(key, {**DETAILS, "port": 1})) as port:
        state = probe(paths, port)
    assert state.kind == "foreign" and "relay" in state.detail


def test_another_known_scopes_cordon_is_named_by_its_config(tmp_path: Path) -> None:
    a, b = _paths(tmp_path, "a"), _paths(tmp_path, "b")
    ensure_key(a)
    record_scope(a)
    key_b = ensure_key(b)
    record_scope(b)
    with listener(stand_in(key_b, DETAILS)) as port:
        state = probe(a, port)
    assert state.kind == "other-scope"
    assert state.other_config == b.config_path
    assert state.message() == f"another scope's cordon ({b.config_path}) holds port {port}"
    assert state.health == {}  # b's proxy gives a's client no details
    assert f"cordon stop --config {b.config_path}" in (state.hint(a.config_path) or "")


def test_a_scope_without_a_key_still_recognises_other_scopes(tmp_path: Path) -> None:
    a, b = _paths(tmp_path, "a"), _paths(tmp_path, "b")
    key_b = ensure_key(b)
    record_scope(b)
    with listener(stand_in(key_b, DETAILS)) as port:
        assert probe(a, port).kind == "other-scope"


def test_settled_says_whether_waiting_could_change_the_answer(tmp_path: Path) -> None:
    """``cordon wait`` stops at a settled answer: an HTTP answer this scope's key rejects, or another scope's
    proof. A peer that speaks no HTTP, or a proof this scope had no key yet to check, may still turn out to be
    this scope's cordon starting up."""
    a, b = _paths(tmp_path, "a"), _paths(tmp_path, "b")
    key_b = ensure_key(b)
    record_scope(b)
    with listener(stand_in(key_b, DETAILS)) as port:
        assert probe(a, port).settled  # another scope's proof
    with listener(stand_in(b"x" * 32, DETAILS)) as port:
        assert not probe(a, port).settled  # a has no key yet: its own cordon may be creating it
        key_a = ensure_key(a)
        assert probe(a, port).kind == "foreign" and probe(a, port).settled
    with listener(lambda head: http_json({"status": "ok", "version": "0.1.0", "routes": 1})) as port:
        assert probe(a, port).settled
    with listener(lambda head: b"SSH-2.0-OpenSSH\r\n") as port:
        assert not probe(a, port).settled
    with listener(stand_in(key_a, DETAILS)) as port:
        assert not probe(a, port).settled and probe(a, port).ours


def test_probe_never_raises_for_garbage_answers(tmp_path: Path) -> None:
    paths = _paths(tmp_path, "a")
    ensure_key(paths)
    for reply in (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{oops", b"HTTP/1.1 200 OK\r\n\r\n[1,2]",
                  b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", b"",
                  http_json({"status": "ok", "proof": "zz"}), http_json({"status": "ok", "proof": "a" * 64})):
        with listener(lambda head, reply=reply: reply) as port:
            assert probe(paths, port, timeout=2).kind == "foreign", reply
    assert identity.NONCE_RE.fullmatch(new_nonce())
