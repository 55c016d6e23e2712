"""The key never comes back: masking the injected secret in routed responses (pure, sans-IO).

:func:`key_patterns` lists the byte strings that give the key away: the value itself, its base64 (standard and
URL-safe alphabets, as ``base64(key)`` starts, so also when more text follows it in the same encoding), its
URL-encoded forms (upper- and lower-case hex), its JSON-escaped forms, and for basic auth the base64 of
``user:key`` that the header carried. Derived forms shorter than :data:`MIN_DERIVED` bytes are left out (they
would match ordinary text); the value itself is always in.

:class:`Masker` finds every occurrence in a stream of pieces and overwrites it with as many ``*`` bytes, so
``Content-Length`` and chunk framing stay valid. An occurrence may straddle pieces: the masker holds back
the longest end of what it has seen that could still begin a pattern (usually nothing: an SSE event ends in
``\\n\\n``, which no pattern starts with) and sends it with the next piece or at the end.

:class:`Scrubber` is what an exchange uses for one response body: plain, or for a compressed body
(``Content-Encoding``) the same masking on the raw bytes plus detection on a decompressed side stream
(:mod:`decoders`); a compressed body that holds the key cannot be masked in place, so the exchange is cut
(``cut`` set, nothing more sent). While the decompressed text ends in something that could begin the key,
the compressed bytes are held back too, so the client never gets a compressed prefix of it.

Limits (docs/security.md): WebSocket frames after a 101 are not scanned; an encoding cordon cannot decode
is refused (``Accept-Encoding`` sent upstream lists only what it can decode); a transform other than these
(e.g. the key hex-encoded, reversed, or base64'd at another offset inside a longer text) is not recognised.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable, Iterator
from functools import lru_cache
from urllib.parse import quote

from cordon_config.model import BasicAuth, Route

from cordon_proxy.core.decoders import DecodeError, Decoder, available_codings, decoder_for
from cordon_proxy.core.http1 import Headers

__all__ = [
    "MASK",
    "MIN_DERIVED",
    "KeyForms",
    "Masker",
    "Scrubber",
    "key_patterns",
    "narrow_accept_encoding",
    "scrub_headers",
]

MASK = b"*"
MIN_DERIVED = 8
#: A compressed body whose decompressed text keeps ending in a possible start of the key holds its compressed
#: bytes back; past this many held bytes the response is cut (it cannot be shown to be free of the key).
MAX_HELD = 1 << 20


def _b64_prefix(raw: bytes, altchars: bytes | None) -> bytes:
    """The part of base64(raw) that raw alone decides (also found when more bytes follow raw)."""
    encoded = base64.b64encode(raw, altchars=altchars)
    return encoded[: len(raw) * 8 // 6]


class KeyForms:
    """The forms of one key that give it away (longest first), with what :class:`Masker` needs of each:
    the pattern, its first byte, and how far back from the end of a piece a prefix of it can start. Made once
    per route and secret by the session, shared by every response of that connection."""

    __slots__ = ("patterns", "starts")

    def __init__(self, patterns: tuple[bytes, ...]) -> None:
        self.patterns = patterns
        self.starts = tuple((pattern, pattern[:1], len(pattern) - 1) for pattern in patterns)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.patterns)

    def __contains__(self, pattern: object) -> bool:
        return pattern in self.patterns

    def __repr__(self) -> str:
        return f"KeyForms({len(self.patterns)} forms)"  # never the forms: they are the key


def key_patterns(route: Route, value: str) -> KeyForms:
    """Every form of the secret ``value`` that :class:`Masker` looks for, longest first."""
    raw = value.encode("utf-8")
    forms = {raw}
    derived: set[bytes] = set()
    for source in (raw, f"{route.auth.username}:{value}".encode() if isinstance(route.auth, BasicAuth) else b""):
        if source:
            derived.add(_b64_prefix(source, None))
            derived.add(_b64_prefix(source, b"-_"))
    derived.add(quote(value, safe="").encode("ascii"))
    derived.add(_lower_hex(quote(value, safe="")).encode("ascii"))
    escaped = json.dumps(value)[1:-1]
    derived.add(escaped.encode("ascii"))
    derived.add(escaped.replace("/", "\\/").encode("ascii"))
    forms.update(form for form in derived if len(form) >= MIN_DERIVED)
    return KeyForms(tuple(sorted(forms, key=lambda form: (-len(form), form))))


def _lower_hex(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "%":
            out.append(text[i : i + 3].lower())
            i += 3
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


class Masker:
    """Masks every occurrence of ``patterns`` in a stream of pieces (see the module doc)."""

    __slots__ = ("_starts", "count", "forms", "patterns", "tail")
    cut = False  # a plain body is masked in place, never cut (the interface of Scrubber)
    reason = ""

    def __init__(self, forms: KeyForms) -> None:
        self.forms = forms
        self.patterns = forms.patterns
        self.tail = b""  # held back: could begin a pattern that the next piece completes
        self.count = 0  # occurrences masked so far
        self._starts = forms.starts

    def feed(self, data: bytes) -> bytes:
        """The bytes that may go out now (masked); the rest is held for the next piece."""
        buf = self.tail + data if self.tail else data
        for pattern in self.patterns:
            if pattern in buf:
                buf = self._mask(buf)
                break
        keep = self._keep(buf)
        if keep:
            self.tail = buf[-keep:]
            return buf[:-keep]
        self.tail = b""
        return buf

    def finish(self) -> bytes:
        """The end of the stream: what was held back (it began no complete pattern)."""
        out, self.tail = self.tail, b""
        return out

    def _mask(self, buf: bytes) -> bytes:
        out = bytearray(buf)
        for pattern in self.patterns:
            start = buf.find(pattern)
            while start != -1:
                out[start : start + len(pattern)] = MASK * len(pattern)
                self.count += 1
                start = buf.find(pattern, start + len(pattern))
        return bytes(out)

    def _keep(self, buf: bytes) -> int:
        """The length of the longest end of ``buf`` that is a proper prefix of a pattern."""
        n = len(buf)
        best = 0
        for pattern, first, reach in self._starts:
            start = n - reach
            i = buf.find(first, start if start > 0 else 0)
            while i != -1 and n - i > best:
                if pattern.startswith(buf[i:]):
                    best = n - i
                    break
                i = buf.find(first, i + 1)
        return best


class _Detector:
    """Feeds decoded pieces to a masker only to learn whether a pattern occurs (output discarded)."""

    __slots__ = ("masker",)

    def __init__(self, forms: KeyForms) -> None:
        self.masker = Masker(forms)

    def __call__(self, piece: bytes) -> None:
        if not self.masker.count:
            self.masker.feed(piece)


class Scrubber:
    """The scrubbing of one response body: :meth:`start` with the response's content codings, then
    :meth:`feed` every piece and :meth:`finish` at the end; ``count`` occurrences were masked, and ``cut``
    says the response must be cut (``reason`` says why)."""

    __slots__ = ("_decoders", "_detector", "cut", "held", "masker", "reason")

    def __init__(self, forms: KeyForms) -> None:
        self.masker = Masker(forms)
        self.cut = False
        self.reason = ""
        self.held = b""  # compressed bytes held while the decoded text could be starting the key
        self._decoders: list[Decoder] = []
        self._detector: _Detector | None = None

    @property
    def count(self) -> int:
        """Occurrences found so far (masked, or in the decoded text of a compressed body)."""
        detected = self._detector.masker.count if self._detector is not None else 0
        return self.masker.count + detected

    def start(self, codings: list[str]) -> str | None:
        """Prepare for a body in ``codings`` (in the order applied, ``identity`` dropped); returns the first
        coding cordon cannot decode (the response must not be relayed), else None."""
        decoders = []
        for coding in codings:
            decoder = decoder_for(coding)
            if decoder is None:
                return coding
            decoders.append(decoder)
        self._decoders = decoders[::-1]  # undo the last coding applied first
        if decoders:
            self._detector = _Detector(self.masker.forms)
        return None

    def feed(self, data: bytes) -> bytes:
        """What of ``data`` may go out now; sets ``cut`` (and returns nothing) when the response must stop."""
        out = self.masker.feed(data)
        if self._detector is None:
            return out
        if not self._decode(data):
            return b""
        if self._detector.masker.tail:  # the decoded text could be starting the key: hold the bytes back
            self.held += out
            if len(self.held) > MAX_HELD:
                self._cut("its decoded text could not be shown to be free of the key within 1 MiB")
            return b""
        if self.held:
            out, self.held = self.held + out, b""
        return out

    def finish(self) -> bytes:
        """The end of the body: the last bytes to send (nothing when the response must be cut)."""
        out = self.masker.finish()
        if self._detector is None:
            return out
        if not self._decode(b"", end=True):
            return b""
        out, self.held = self.held + out, b""
        return out

    def _decode(self, data: bytes, *, end: bool = False) -> bool:
        """Decode ``data`` through the codings into the detector; False (and ``cut``) when the key is there
        or the body does not decode."""
        detector = self._detector
        assert detector is not None
        try:
            self._run(0, data, end)
        except DecodeError as exc:
            self._cut(f"its body could not be decoded to be scanned ({exc})")
            return False
        if detector.masker.count:
            self._cut("its compressed body holds the key")
            return False
        return True

    def _run(self, index: int, data: bytes, end: bool) -> None:
        decoders = self._decoders
        assert self._detector is not None
        sink = self._detector if index == len(decoders) - 1 else (lambda piece: self._run(index + 1, piece, False))
        if data:
            decoders[index].feed(data, sink)
        if end:
            decoders[index].finish(sink)
            if index < len(decoders) - 1:
                self._run(index + 1, b"", True)

    def _cut(self, reason: str) -> None:
        self.cut = True
        self.reason = reason
        self.held = b""


def scrub_headers(headers: Headers, forms: KeyForms) -> int:
    """Mask every form of the key in the header values, in place; returns the number of occurrences masked."""
    joined = b"\n".join([value for _, value in headers])
    for pattern in forms.patterns:
        if pattern in joined:
            break
    else:
        return 0
    count = 0
    for index, (name, value) in enumerate(headers):
        masker = Masker(forms)
        masked = masker.feed(value) + masker.finish()
        if masker.count:
            headers[index] = (name, masked)
            count += masker.count
    return count


def content_codings(values: Iterable[bytes]) -> list[str]:
    """The codings of ``Content-Encoding`` values, in the order applied (lower-case, ``identity`` dropped)."""
    codings: list[str] = []
    for value in values:
        for token in value.split(b","):
            coding = token.strip().lower().decode("latin-1")
            if coding and coding != "identity":
                codings.append(coding)
    return codings


@lru_cache(maxsize=64)
def narrow_accept_encoding(values: tuple[bytes, ...]) -> bytes:
    """One ``Accept-Encoding`` value listing only codings cordon can decode (``*`` spelled out as the decodable
    codings not listed already; ``identity`` when nothing is left, since no header would mean any coding)."""
    supported = available_codings()
    items: list[tuple[str, bytes, bytes]] = []  # (name, as written, params)
    for value in values:
        for item in value.split(b","):
            coding, _, params = item.strip().partition(b";")
            items.append((coding.strip().lower().decode("latin-1"), coding.strip(), b";" + params if params else b""))
    listed = {name for name, _, _ in items}
    kept: list[bytes] = []
    for name, written, suffix in items:
        if name == "*":
            kept += [c.encode() + suffix for c in sorted(supported - listed) if c != "x-gzip"]
        elif name in supported or name == "identity":
            kept.append(written + suffix)
    return b", ".join(kept) if kept else b"identity"
