"""SCRAM-SHA-256 (RFC 7677 vector, client against server, channel binding, downgrade), MD5 and SASLprep."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cordon_pg.scram import (
    SCRAM,
    SCRAM_PLUS,
    ScramClient,
    ScramError,
    ScramServer,
    md5_password,
    saslprep,
    server_end_point_hash,
)


def test_rfc7677_vector() -> None:
    client = ScramClient("pencil", binding=None, use_plus=False)
    client._nonce = "rOprNGfwEbeRWgbNEkqO"
    client._first_bare = "n=user,r=rOprNGfwEbeRWgbNEkqO"
    server_first = b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    final = client.final(server_first)
    assert final == (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                     b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    client.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")
    with pytest.raises(ScramError, match="does not know the password"):
        client.verify(b"v=" + base64.b64encode(bytes(32)))


def exchange(client: ScramClient, server: ScramServer) -> str:
    server_first = server.first(client.first())
    server_final, name, _ = server.final(client.final(server_first))
    client.verify(server_final)
    return name


def test_client_and_server_agree_and_pick_the_right_token() -> None:
    server = ScramServer([("default", "tok-a"), ("codex", "tok-b")], salt=b"0123456789abcdef")
    assert exchange(ScramClient("tok-b", binding=None, use_plus=False), server) == "codex"
    bad = ScramServer([("default", "tok-a")], salt=b"0123456789abcdef")
    client = ScramClient("wrong", binding=None, use_plus=False)
    with pytest.raises(ScramError, match="wrong password"):
        bad.final(client.final(bad.first(client.first())))


def test_the_salted_password_cache_is_filled_once() -> None:
    cache: dict[str, bytes] = {}
    for _ in range(3):
        server = ScramServer([("default", "tok")], salt=b"s" * 16, salted=cache)
        assert exchange(ScramClient("tok", binding=None, use_plus=False), server) == "default"
    assert list(cache) == ["tok"]


def test_the_client_caches_salted_passwords_per_password_salt_and_count() -> None:
    cache: dict[tuple[bytes, bytes, int], bytes] = {}
    server = ScramServer([("db", "pw-1")], salt=b"role-salt-16byte")
    for _ in range(3):
        client = ScramClient("pw-1", binding=None, use_plus=False, salted=cache)
        assert exchange(client, ScramServer([("db", "pw-1")], salt=b"role-salt-16byte")) == "db"
    assert len(cache) == 1 and b"pw-1" not in next(iter(cache))[0]
    rotated = ScramClient("pw-2", binding=None, use_plus=False, salted=cache)
    with pytest.raises(ScramError):  # a new password is derived afresh, never served from the old entry
        server.final(rotated.final(server.first(rotated.first())))
    assert len(cache) == 2


def test_gs2_headers() -> None:
    assert ScramClient("p", binding=None, use_plus=False).first().startswith(b"n,,n=,r=")
    assert ScramClient("p", binding=b"h" * 32, use_plus=False).first().startswith(b"y,,n=,r=")
    plus = ScramClient("p", binding=b"h" * 32, use_plus=True)
    assert plus.mechanism == SCRAM_PLUS and plus.first().startswith(b"p=tls-server-end-point,,n=,r=")
    assert ScramClient("p", binding=None, use_plus=False).mechanism == SCRAM
    with pytest.raises(ValueError, match="channel binding"):
        ScramClient("p", binding=None, use_plus=True)


def test_channel_binding_data_goes_into_the_final_message() -> None:
    client = ScramClient("p", binding=b"\x01" * 32, use_plus=True)
    first = client.first().decode()
    nonce = first.split("r=", 1)[1]
    final = client.final(f"r={nonce}xyz,s={base64.b64encode(b'salt').decode()},i=4096".encode()).decode()
    binding = base64.b64decode(final.split("c=", 1)[1].split(",", 1)[0])
    assert binding == b"p=tls-server-end-point,," + b"\x01" * 32


@pytest.mark.parametrize("server_first", [
    b"r=OTHERNONCE,s=c2FsdA==,i=4096",  # does not extend our nonce
    b"s=c2FsdA==,i=4096",
    b"r={n}x,s=***,i=4096",
    b"r={n}x,s=c2FsdA==,i=0",
    b"r={n}x,s=c2FsdA==,i=lots",
    b"r={n},s=c2FsdA==,i=4096",  # the server added nothing to the nonce
    b"\xff\xfe",
    b"garbage",
])
def test_client_rejects_bad_server_first(server_first: bytes) -> None:
    client = ScramClient("p", binding=None, use_plus=False)
    nonce = client.first().decode().split("r=", 1)[1]
    with pytest.raises(ScramError):
        client.final(server_first.replace(b"{n}", nonce.encode()))


def test_client_reports_server_error_and_out_of_order_final() -> None:
    client = ScramClient("p", binding=None, use_plus=False)
    with pytest.raises(ScramError, match="before"):
        client.verify(b"v=abc")
    nonce = client.first().decode().split("r=", 1)[1]
    client.final(f"r={nonce}x,s=c2FsdA==,i=4096".encode())
    with pytest.raises(ScramError, match="refused"):
        client.verify(b"e=invalid-proof")


def test_server_side_channel_binding() -> None:
    server = ScramServer([("default", "tok")], salt=b"s" * 16, binding=b"\x03" * 32)
    assert exchange(ScramClient("tok", binding=b"\x03" * 32, use_plus=True), server) == "default"
    server = ScramServer([("default", "tok")], salt=b"s" * 16, binding=b"\x03" * 32)
    client = ScramClient("tok", binding=b"\x04" * 32, use_plus=True)
    with pytest.raises(ScramError, match="channel binding"):
        server.final(client.final(server.first(client.first())))


@pytest.mark.parametrize("client_first", [b"p=tls-server-end-point,,n=,r=x", b"x,,n=,r=x", b"n,a=admin,n=,r=x",
                                          b"n,,r=x", b"n,,n=,m=ext,r=x", b"\xff"])
def test_server_rejects_bad_client_first(client_first: bytes) -> None:
    with pytest.raises(ScramError):
        ScramServer([("default", "t")], salt=b"s" * 16).first(client_first)


def test_server_rejects_tampered_final() -> None:
    server = ScramServer([("default", "tok")], salt=b"s" * 16)
    client = ScramClient("tok", binding=None, use_plus=False)
    final = client.final(server.first(client.first()))
    for tampered in (final.replace(b"c=biws", b"c=eSws"), final.split(b",p=")[0],
                     final.replace(b",r=", b",r=x"), final[:-4] + b"AAA="):
        fresh = ScramServer([("default", "tok")], salt=b"s" * 16)
        fresh._nonce, fresh._gs2, fresh._first_bare, fresh._server_first = (
            server._nonce, server._gs2, server._first_bare, server._server_first)
        with pytest.raises(ScramError):
            fresh.final(tampered)


def test_errors_never_contain_the_password() -> None:
    client = ScramClient("sup3r-secret-pw", binding=None, use_plus=False)
    for bad in (b"garbage", b"r=x,s=@@,i=1"):
        with pytest.raises(ScramError) as caught:
            client.final(bad)
        assert "sup3r-secret-pw" not in str(caught.value)


def test_md5_password_matches_postgres() -> None:
    inner = hashlib.md5(b"secretapp_user").hexdigest()
    expected = b"md5" + hashlib.md5(inner.encode() + b"\x01\x02\x03\x04").hexdigest().encode()
    assert md5_password("app_user", "secret", b"\x01\x02\x03\x04") == expected
    assert len(expected) == 35


@pytest.mark.parametrize(("password", "expected"), [
    ("pencil", b"pencil"),
    ("I\u00adX", b"IX"),  # soft hyphen maps to nothing
    ("\u2168", b"IX"),  # NFKC
    ("a\u00a0b", b"a b"),  # non-ASCII space maps to space
    ("a\u0007b", b"a\x07b"),  # prohibited control character: PostgreSQL uses the raw bytes
    ("\u0627\u0031", "\u0627\u0031".encode()),  # bidi rule broken: raw bytes
])
def test_saslprep(password: str, expected: bytes) -> None:
    assert saslprep(password) == expected


def test_server_end_point_hash() -> None:
    der = b"certificate"
    assert server_end_point_hash(der, "sha256") == hashlib.sha256(der).digest()
    assert server_end_point_hash(der, "SHA1") == hashlib.sha256(der).digest()  # MD5/SHA-1 → SHA-256
    assert server_end_point_hash(der, "sha384") == hashlib.sha384(der).digest()
    assert server_end_point_hash(der, None) is None
    assert server_end_point_hash(der, "no-such-hash") is None
