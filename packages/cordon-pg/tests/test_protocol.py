"""The PostgreSQL wire codec: startup packets, message framing, the handshake message bodies (no sockets)."""

from __future__ import annotations

import struct

import pytest
from cordon_pg import protocol as pq
from hypothesis import given
from hypothesis import strategies as st


def packets(*chunks: bytes) -> list[object]:
    reader = pq.StartupReader()
    found = []
    for chunk in chunks:
        reader.feed(chunk)
        while (packet := reader.next()) is not None:
            found.append(packet)
    return found


def test_startup_message_round_trips_in_any_split() -> None:
    raw = pq.startup_message([("user", "app_user"), ("database", "app"), ("application_name", "psql")])
    for cut in range(len(raw) + 1):
        (packet,) = packets(raw[:cut], raw[cut:])
        assert isinstance(packet, pq.StartupMessage)
        assert packet.version == pq.PROTOCOL_3_0 and packet.get("database") == "app"
        assert packet.parameters[0] == ("user", "app_user") and packet.get("missing") is None


def test_ssl_gssenc_and_cancel_requests() -> None:
    gss = struct.pack("!II", 8, pq.GSSENC_REQUEST)
    ssl, cancel = pq.ssl_request(), pq.cancel_request(4242, b"\x01\x02\x03\x04")
    assert packets(ssl + gss + cancel) == [pq.SSLRequest(), pq.GSSENCRequest(), pq.CancelRequest(4242, b"\1\2\3\4")]
    long_key = pq.cancel_request(7, bytes(32))  # protocol 3.2 keys are longer
    assert packets(long_key) == [pq.CancelRequest(7, bytes(32))]


@pytest.mark.parametrize(("raw", "why"), [
    (struct.pack("!I", 4) + b"xxxx", "invalid length"),
    (struct.pack("!I", 100_000), "invalid length"),
    (struct.pack("!II", 8, 2 << 16), "unsupported frontend protocol 2.0"),
    (struct.pack("!III", 12, pq.SSL_REQUEST, 0), "SSLRequest with a body"),
    (struct.pack("!III", 12, pq.CANCEL_REQUEST, 1), "CancelRequest of the wrong length"),
    (struct.pack("!II", 12, pq.PROTOCOL_3_0) + b"user", "not terminated"),
    (struct.pack("!II", 14, pq.PROTOCOL_3_0) + b"user\0\0", "without a value"),
    (struct.pack("!II", 14, pq.PROTOCOL_3_0) + b"\0x\0\0\0\0", "empty parameter name"),
    (struct.pack("!II", 13, pq.PROTOCOL_3_0) + b"u\0\xff\0\0", "not UTF-8"),
])
def test_bad_startup_packets(raw: bytes, why: str) -> None:
    with pytest.raises(pq.ProtocolError, match=why):
        packets(raw)


def test_message_reader_framing_and_limit() -> None:
    reader = pq.MessageReader(max_length=64)
    stream = pq.message(b"S", b"a\0b\0") + pq.message(b"Z", b"I") + b"Q\0\0"
    reader.feed(stream)
    assert reader.next() == pq.Message(b"S", b"a\0b\0")
    assert reader.next().raw == b"Z\0\0\0\x05I"
    assert reader.next() is None and reader.take_rest() == b"Q\0\0"
    reader.feed(b"X" + struct.pack("!I", 3))
    with pytest.raises(pq.ProtocolError, match="below 4"):
        reader.next()
    big = pq.MessageReader(max_length=64)
    big.feed(b"D" + struct.pack("!I", 65))
    with pytest.raises(pq.ProtocolError, match="over the handshake limit"):
        big.next()


def test_authentication_requests() -> None:
    def body(raw: bytes) -> bytes:
        return raw[5:]

    assert pq.parse_authentication(body(pq.authentication(pq.AUTH_OK))) == pq.AuthRequest(pq.AUTH_OK)
    md5 = pq.parse_authentication(body(pq.authentication(pq.AUTH_MD5, b"salt")))
    assert (md5.code, md5.data) == (pq.AUTH_MD5, b"salt")
    sasl = pq.parse_authentication(body(pq.authentication(pq.AUTH_SASL, mechanisms=["SCRAM-SHA-256-PLUS",
                                                                                    "SCRAM-SHA-256"])))
    assert sasl.mechanisms == ("SCRAM-SHA-256-PLUS", "SCRAM-SHA-256")
    cont = pq.parse_authentication(body(pq.authentication(pq.AUTH_SASL_CONTINUE, b"r=abc")))
    assert cont.data == b"r=abc"
    with pytest.raises(pq.ProtocolError, match="4-byte salt"):
        pq.parse_authentication(struct.pack("!i", pq.AUTH_MD5) + b"xy")
    with pytest.raises(pq.ProtocolError, match="too short"):
        pq.parse_authentication(b"\0")
    with pytest.raises(pq.ProtocolError):
        pq.parse_authentication(struct.pack("!i", pq.AUTH_SASL) + b"SCRAM")


def test_password_and_sasl_messages() -> None:
    assert pq.parse_password(pq.password_message(b"hunter2")[5:]) == b"hunter2"
    with pytest.raises(pq.ProtocolError):
        pq.parse_password(b"a\0b\0")
    initial = pq.sasl_initial_response("SCRAM-SHA-256", b"n,,n=,r=x")
    assert pq.parse_sasl_initial_response(initial[5:]) == ("SCRAM-SHA-256", b"n,,n=,r=x")
    with pytest.raises(pq.ProtocolError, match="does not match"):
        pq.parse_sasl_initial_response(b"SCRAM-SHA-256\0" + struct.pack("!i", 5) + b"ab")
    assert pq.sasl_response(b"c=biws")[:1] == b"p"


def test_backend_key_and_errors() -> None:
    assert pq.parse_backend_key_data(pq.backend_key_data(99, b"\xaa" * 4)[5:]) == (99, b"\xaa" * 4)
    assert pq.parse_backend_key_data(pq.backend_key_data(99, b"\xaa" * 32)[5:]) == (99, b"\xaa" * 32)
    with pytest.raises(pq.ProtocolError):
        pq.parse_backend_key_data(b"\0\0\0\1")
    fields = {"S": "FATAL", "V": "FATAL", "C": "28P01", "M": "cordon: no", "H": "fix it"}
    raw = pq.error_response(fields)
    assert raw[:1] == b"E" and pq.parse_error_fields(raw[5:]) == fields
    with pytest.raises(pq.ProtocolError, match="not terminated"):
        pq.parse_error_fields(b"Mabc\0")
    with pytest.raises(ValueError, match="NUL"):
        pq.error_response({"M": "a\0b"})


@given(st.binary(max_size=300), st.integers(min_value=1, max_value=20))
def test_startup_reader_never_fails_with_anything_but_protocol_errors(data: bytes, step: int) -> None:
    reader = pq.StartupReader()
    try:
        for start in range(0, len(data), step):
            reader.feed(data[start : start + step])
            while reader.next() is not None:
                pass
    except pq.ProtocolError:
        pass


@given(st.binary(max_size=300))
def test_message_parsers_only_raise_protocol_errors(body: bytes) -> None:
    for parse in (pq.parse_authentication, pq.parse_error_fields, pq.parse_backend_key_data, pq.parse_password,
                  pq.parse_sasl_initial_response):
        try:
            parse(body)
        except pq.ProtocolError:
            pass
