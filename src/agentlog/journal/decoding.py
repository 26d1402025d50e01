"""Bounded decoding of a body's Content-Encoding (pure).

A 481-byte brotli body can decode to hundreds of MiB, so nothing here decodes
a body whole: each coding is a streaming decoder asked for at most _STEP bytes
at a time, and decoding stops as soon as `limit` bytes of output exist (the
rest is never produced). The result is one of:

- the whole decoded body (at most `limit` bytes);
- a prefix of it, marked truncated: the output reached `limit`, or the
  captured bytes were cut by the cap before the stream's end;
- nothing, with the reason: an unknown coding, or a corrupt or unfinished
  stream although every byte was captured. The caller must then store no
  body at all: raw compressed bytes would hide secrets from the redactor.

Codings (RFC 9110 8.4.1): gzip (x-gzip is the same; concatenated members are
one body), deflate (zlib-wrapped, or raw deflate as some servers send it), br,
zstd (window at most 8 MiB, RFC 9659; concatenated frames are one body) and
identity (a no-op); a list such as `gzip, br` is undone from the last.
"""

import sys
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import brotli

if sys.version_info >= (3, 14):
    from compression import zstd
else:  # mitmproxy depends on the backport before 3.14
    from backports import zstd

_STEP = 32 * 1024  # output asked of a decoder per call; also the input slice size
# Inner layers of a multi-coding body may expand too (br over a gzip stream of
# empty blocks): their output, all layers together, is held to this many times
# the limit (plus a floor) before decoding stops, so the work stays
# proportional to the cap. An honest inner stream is about as long as what it
# decodes to, or shorter.
_INNER_WORK_FACTOR = 8
_INNER_WORK_FLOOR = 1 << 20
_ZSTD_WINDOW_LOG_MAX = 23  # 8 MiB, the most an HTTP zstd body may ask for (RFC 9659)
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Decoded:
    data: bytes | None  # at most `limit` bytes; None: the body cannot be decoded
    truncated: bool  # `data` is a prefix of the decoded body
    problem: str | None = None  # why `data` is None


class _Decoder(Protocol):
    """The interface of zstd's streaming decompressor; the others are adapted to it."""

    @property
    def eof(self) -> bool: ...
    @property
    def needs_input(self) -> bool: ...
    @property
    def unused_data(self) -> bytes: ...
    def decompress(self, data: bytes, max_length: int) -> bytes: ...


class _Corrupt(Exception):
    pass


class _Unfinished(Exception):
    """The input ended before the stream did."""


class _TooMuchWork(Exception):
    pass


class _Zlib:
    """gzip (any member), zlib or raw deflate; `wbits=None` sniffs zlib vs raw deflate."""

    def __init__(self, wbits: int | None) -> None:
        self._wbits = wbits
        self._head = b""  # first bytes, kept until there are two to sniff
        self._d = None if wbits is None else zlib.decompressobj(wbits)
        self._full = False  # the last call filled max_length: more output may be pending

    @property
    def eof(self) -> bool:
        return self._d is not None and self._d.eof

    @property
    def needs_input(self) -> bool:
        return self._d is None or (not self._d.unconsumed_tail and not self._full)

    @property
    def unused_data(self) -> bytes:
        return b"" if self._d is None else self._d.unused_data

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._d is None:
            self._head += data
            if len(self._head) < 2:
                return b""
            data, self._head = self._head, b""
            self._d = zlib.decompressobj(15 if _is_zlib_header(data) else -15)
        out = self._d.decompress(self._d.unconsumed_tail + data, max_length)
        self._full = len(out) >= max_length
        return out


def _is_zlib_header(data: bytes) -> bool:
    """RFC 1950: CM 8 (deflate), a window of at most 32 KiB, FCHECK making it a multiple of 31."""
    cmf, flg = data[0], data[1]
    return cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    @property
    def eof(self) -> bool:
        return self._d.is_finished()

    @property
    def needs_input(self) -> bool:
        return self._d.can_accept_more_data()

    @property
    def unused_data(self) -> bytes:
        return b""  # brotli refuses data after its end itself

    def decompress(self, data: bytes, max_length: int) -> bytes:
        # The limit is loose (output comes in blocks of up to 32 KiB more); the
        # caller cuts to its own limit.
        return self._d.process(data, output_buffer_limit=max_length)


def _zstd() -> _Decoder:
    return zstd.ZstdDecompressor(
        options={zstd.DecompressionParameter.window_log_max: _ZSTD_WINDOW_LOG_MAX}
    )


_DECODERS: dict[str, Callable[[], _Decoder]] = {
    "gzip": lambda: _Zlib(zlib.MAX_WBITS | 32),  # gzip or zlib header, as mitmproxy reads it
    "x-gzip": lambda: _Zlib(zlib.MAX_WBITS | 32),
    "deflate": lambda: _Zlib(None),
    "br": _Brotli,
    "zstd": _zstd,
}
# Codings whose body may be several streams back to back (gzip members, zstd frames).
_CONCATENATED = {"gzip", "x-gzip", "zstd"}
_ERRORS = (zlib.error, brotli.error, zstd.ZstdError, EOFError)


def codings(content_encoding: str) -> list[str]:
    """The codings in the order they were applied, identity (a no-op) left out."""
    if not content_encoding:  # most bodies: spare the parse
        return []
    names = (c.strip().lower() for c in content_encoding.split(","))
    return [c for c in names if c and c != "identity"]


def decode(data: bytes, content_encoding: str, limit: int, complete: bool = True) -> Decoded:
    """Undo `content_encoding`, keeping at most `limit` bytes of output.

    `complete` is False when `data` is only the first part of the body (cut
    by the cap): a stream that ends with the data is then a prefix, not an
    error."""
    applied = codings(content_encoding)
    unknown = [c for c in applied if c not in _DECODERS]
    if unknown:
        return Decoded(None, False, f"unknown content-encoding: {', '.join(unknown)}")
    if not applied or not data:
        return Decoded(data[:limit], not complete or len(data) > limit)
    source: Iterator[bytes] = iter(data[i : i + _STEP] for i in range(0, len(data), _STEP))
    work = [0]
    for i, coding in enumerate(reversed(applied)):
        source = _layer(coding, source)
        if i < len(applied) - 1:  # an inner layer's output is the next layer's input
            source = _metered(source, work, _INNER_WORK_FACTOR * limit + _INNER_WORK_FLOOR)
    out = bytearray()
    try:
        for piece in source:
            out += piece
            if len(out) > limit:
                return Decoded(bytes(out[:limit]), True)
    except _Unfinished as e:
        if complete:
            return Decoded(None, False, f"the {e} stream ends early")
        return Decoded(bytes(out), True)
    except _TooMuchWork:
        return Decoded(bytes(out), True)
    except _Corrupt as e:
        return Decoded(None, False, str(e))
    finally:
        source.close()  # type: ignore[attr-defined]  # generators: frees the decoders now
    return Decoded(bytes(out), not complete)


def _layer(coding: str, source: Iterator[bytes]) -> Iterator[bytes]:
    """Decoded output of one coding, in pieces of about _STEP bytes."""
    decoder = _DECODERS[coding]()
    stalls = 0
    try:
        for chunk in source:
            while True:
                if decoder.eof:
                    chunk = decoder.unused_data + chunk
                    if not chunk:
                        break
                    if coding not in _CONCATENATED:
                        raise _Corrupt(f"data after the end of the {coding} stream")
                    if coding != "zstd" and not chunk.startswith(_GZIP_MAGIC[: len(chunk)]):
                        raise _Corrupt(f"data after the end of the {coding} stream")
                    decoder = _DECODERS[coding]()  # the next member or frame
                if decoder.needs_input:
                    if not chunk:
                        break
                    out, chunk = decoder.decompress(chunk, _STEP), b""
                    stalls = 0  # it took input: that is progress
                else:
                    out = decoder.decompress(b"", _STEP)
                    stalls = 0 if out else stalls + 1
                    if stalls > 2:  # says it has output but gives none: never spin
                        raise _Corrupt(f"the {coding} decoder stalled")
                if out:
                    yield out
    except _ERRORS as e:
        raise _Corrupt(f"corrupt {coding} stream ({type(e).__name__}: {e})") from None
    if not decoder.eof:
        raise _Unfinished(coding)


def _metered(source: Iterator[bytes], work: list[int], budget: int) -> Iterator[bytes]:
    for piece in source:
        work[0] += len(piece)
        if work[0] > budget:
            raise _TooMuchWork
        yield piece
