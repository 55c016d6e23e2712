"""Streaming decoders for ``Content-Encoding`` (pure computation, bounded memory): what the scrubber uses
to read a compressed response body on a side stream.

``gzip``/``x-gzip`` and ``deflate`` use the stdlib ``zlib``; ``br`` needs ``brotli`` (>= 1.2) and ``zstd``
needs ``zstandard`` (the ``compression`` extra of cordon-proxy; the umbrella install has both). A decoder
is imported on first use. Each :class:`Decoder` turns input pieces into output pieces of at most
:data:`PIECE` bytes, so a small input that expands enormously never sits in memory whole.
"""

from __future__ import annotations

import importlib.util
import zlib
from collections.abc import Callable
from typing import Any

__all__ = ["PIECE", "DecodeError", "Decoder", "Emit", "available_codings", "decoder_for"]

PIECE = 1 << 16
_MODULES = {"br": "brotli", "zstd": "zstandard"}
_available: frozenset[str] | None = None


class DecodeError(ValueError):
    """The body is not valid in its declared encoding."""


def available_codings() -> frozenset[str]:
    """The content codings cordon can decode here (``gzip``, ``x-gzip``, ``deflate``, plus ``br`` and ``zstd``
    when their modules are installed)."""
    global _available
    if _available is None:
        found = {"gzip", "x-gzip", "deflate"}
        for coding, module in _MODULES.items():
            if importlib.util.find_spec(module) is not None:
                found.add(coding)
        _available = frozenset(found)
    return _available


Emit = Callable[[bytes], None]
"""Receives each output piece (at most :data:`PIECE` bytes) as it is decoded; it may raise to stop."""


class Decoder:
    """One content coding, decoded incrementally: :meth:`feed` and :meth:`finish` hand output pieces to
    ``emit`` as they come, so memory stays bounded whatever the expansion."""

    def feed(self, data: bytes, emit: Emit) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def finish(self, emit: Emit) -> None:
        """The end of the body: whatever the decoder still holds."""


class _Zlib(Decoder):
    """gzip (several members in a row allowed) and deflate (zlib-wrapped, or raw as some servers send it)."""

    def __init__(self, coding: str) -> None:
        self.coding = coding
        self._d: Any = None
        self._head = b""  # deflate: the first two bytes decide zlib or raw
        self._done = False

    def _new(self, first: bytes) -> Any:
        if self.coding != "deflate":
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        zlib_wrapped = len(first) >= 2 and first[0] & 0x0F == 8 and (first[0] << 8 | first[1]) % 31 == 0
        return zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)

    def feed(self, data: bytes, emit: Emit) -> None:
        if self._done:
            return  # trailing bytes after a deflate stream: ignored, as clients do
        if self._d is None:
            self._head += data
            if len(self._head) < 2:
                return
            data, self._head = self._head, b""
            self._d = self._new(data)
        while data:
            d = self._d
            try:
                out = d.decompress(data, PIECE)
                while True:
                    if out:
                        emit(out)
                    if not d.unconsumed_tail:
                        break
                    out = d.decompress(d.unconsumed_tail, PIECE)
            except zlib.error as exc:
                raise DecodeError(f"invalid {self.coding} data") from exc
            data = b""
            if d.eof and d.unused_data:
                if self.coding == "deflate":
                    self._done = True
                    return
                data = d.unused_data  # the next gzip member
                self._d = self._new(data)

    def finish(self, emit: Emit) -> None:
        if self._d is None:
            if self._head:
                raise DecodeError(f"truncated {self.coding} data")
            return
        try:
            out = self._d.flush()
        except zlib.error as exc:
            raise DecodeError(f"invalid {self.coding} data") from exc
        if out:
            emit(out)


class _Brotli(Decoder):
    def __init__(self) -> None:
        import brotli

        self._d = brotli.Decompressor()
        self._error: type[Exception] = brotli.error

    def feed(self, data: bytes, emit: Emit) -> None:
        d = self._d
        try:
            # with a limit, output may stay buffered even once more input is accepted: drain until none comes
            out = d.process(data, output_buffer_limit=PIECE)
            while out:
                emit(out)
                if d.is_finished():
                    break
                out = d.process(b"", output_buffer_limit=PIECE)
        except self._error as exc:
            raise DecodeError("invalid br data") from exc


class _Sink:
    """The zstandard writer's output: each piece goes straight to ``emit`` (nothing queues up)."""

    __slots__ = ("emit",)

    def __init__(self) -> None:
        self.emit: Emit = _nothing

    def write(self, data: bytes) -> int:
        self.emit(bytes(data))
        return len(data)


def _nothing(data: bytes) -> None:
    return None


class _Zstd(Decoder):
    def __init__(self) -> None:
        import zstandard

        self._sink = _Sink()
        sink: Any = self._sink  # a file-like object that only writes
        self._w = zstandard.ZstdDecompressor().stream_writer(sink, write_size=PIECE, write_return_read=True)
        self._error: type[Exception] = zstandard.ZstdError

    def feed(self, data: bytes, emit: Emit) -> None:
        self._sink.emit = emit
        try:
            self._w.write(data)
        except self._error as exc:
            raise DecodeError("invalid zstd data") from exc
        finally:
            self._sink.emit = _nothing


_FACTORIES: dict[str, Callable[[], Decoder]] = {
    "gzip": lambda: _Zlib("gzip"),
    "x-gzip": lambda: _Zlib("gzip"),
    "deflate": lambda: _Zlib("deflate"),
    "br": _Brotli,
    "zstd": _Zstd,
}


def decoder_for(coding: str) -> Decoder | None:
    """A fresh decoder for ``coding`` (lower-case), or None when cordon cannot decode it here."""
    if coding not in available_codings():
        return None
    return _FACTORIES[coding]()
