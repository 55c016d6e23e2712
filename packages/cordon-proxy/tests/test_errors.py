"""cordon's own error answers (SECURITY.md A.11)."""

from __future__ import annotations

import pytest
from cordon_proxy.core.errors import CODES, error_response, one_line


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_error_is_one_plain_text_line_with_code_and_close(code: str) -> None:
    raw = error_response(code, "something\r\nX-Injected: 1 happened")
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 %d " % CODES[code])
    assert b"\r\nX-Cordon-Error: " + code.encode() + b"\r\n" in head + b"\r\n"
    assert b"Connection: close" in head and b"Content-Type: text/plain; charset=utf-8" in head
    assert body.startswith(b"cordon: ") and body.endswith(b"\n") and body.count(b"\n") == 1
    assert b"X-Injected: 1" not in head
    assert b"Content-Length: %d" % len(body) in head


def test_statuses_of_the_spec() -> None:
    assert {CODES[c] for c in CODES} == {400, 403, 407, 421, 429, 431, 502, 503, 504}


def test_one_line() -> None:
    assert one_line("a\nb\tc") == "a b c"
    assert one_line("é\x01") == "\\xe9?"
    assert len(one_line("x" * 1000, 50)) == 50
