"""The bounded decoder (pure): every coding, bombs, cuts, corrupt and unknown codings."""

from __future__ import annotations

import gzip
import sys
import time
import zlib
from unittest import mock

import brotli
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.journal import decoding
from agentlog.journal.decoding import codings, decode

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

MiB = 1 << 20


def deflate_raw(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


ENCODERS = {
    "gzip": gzip.compress,
    "x-gzip": gzip.compress,
    "deflate": zlib.compress,
    "br": brotli.compress,
    "zstd": zstd.compress,
}


def encode(data: bytes, applied: list[str]) -> bytes:
    for coding in applied:
        data = ENCODERS[coding](data)
    return data


def zeros_bomb(coding: str, mib: int) -> bytes:
    compressor = {
        "br": lambda: brotli.Compressor(quality=5),
        "gzip": lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
        "deflate": lambda: zlib.compressobj(9),
        "zstd": lambda: zstd.ZstdCompressor(level=3),
    }[coding]()
    feed = getattr(compressor, "process", None) or compressor.compress
    end = getattr(compressor, "finish", None) or compressor.flush
    return b"".join(feed(bytes(MiB)) for _ in range(mib)) + end()


TEXT = b"The quick brown fox jumps over the lazy dog. " * 200


@pytest.mark.parametrize("coding", sorted(ENCODERS))
def test_each_coding_decodes_whole(coding):
    got = decode(ENCODERS[coding](TEXT), coding, MiB)
    assert got.data == TEXT and not got.truncated and got.problem is None


def test_deflate_without_zlib_wrapper_decodes():
    assert decode(deflate_raw(TEXT), "deflate", MiB).data == TEXT


@pytest.mark.parametrize("header", ["", "identity", "IDENTITY", " identity , "])
def test_identity_is_stored_as_is(header):
    got = decode(b"\x1f\x8bnot really gzip", header, MiB)
    assert got.data == b"\x1f\x8bnot really gzip" and not got.truncated


def test_codings_are_read_case_insensitively_without_identity():
    assert codings(" GZIP , identity,br ,") == ["gzip", "br"]


@pytest.mark.parametrize(
    "applied", [["gzip", "br"], ["br", "zstd", "gzip"], ["deflate", "deflate"], ["zstd", "x-gzip"]]
)
def test_several_codings_are_undone_last_first(applied):
    got = decode(encode(TEXT, applied), ", ".join(applied), MiB)
    assert got.data == TEXT and not got.truncated


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate", "zstd"])
def test_a_bomb_yields_at_most_the_cap_quickly(coding):
    wire = zeros_bomb(coding, 200)
    assert len(wire) < MiB  # small on the wire, 200 MiB decoded
    start = time.perf_counter()
    got = decode(wire, coding, 256 * 1024)
    assert time.perf_counter() - start < 1.0
    assert got.data == bytes(256 * 1024) and got.truncated


def test_a_bomb_inside_another_coding_is_cut_too():
    wire = brotli.compress(zeros_bomb("gzip", 64), quality=5)
    got = decode(wire, "gzip, br", 100_000)
    assert got.data == bytes(100_000) and got.truncated


def test_an_inner_coding_that_expands_to_nothing_is_bounded_work():
    # A deflate stream of empty blocks: it decodes to nothing, however long it is,
    # so only a bound on the inner layer's output stops the work.
    empty_blocks = b"\x00\x00\x00\xff\xff" * (4 * MiB)  # 20 MiB of empty stored blocks
    wire = brotli.compress(empty_blocks, quality=5)
    start = time.perf_counter()
    got = decode(wire, "deflate, br", 64 * 1024)
    assert time.perf_counter() - start < 2.0
    assert got.data == b"" and got.truncated


def test_exactly_the_cap_is_not_truncated():
    got = decode(gzip.compress(bytes(1000)), "gzip", 1000)
    assert got.data == bytes(1000) and not got.truncated


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate", "zstd"])
def test_a_stream_cut_by_the_cap_gives_a_prefix(coding):
    plain = bytes(range(256)) * 400 + TEXT
    wire = ENCODERS[coding](plain)
    got = decode(wire[: len(wire) // 2], coding, MiB, complete=False)
    assert got.data is not None and got.truncated
    assert plain.startswith(got.data)


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate", "zstd"])
def test_a_stream_that_ends_early_although_whole_is_not_decoded(coding):
    wire = ENCODERS[coding](TEXT)
    got = decode(wire[:-4], coding, MiB, complete=True)
    assert got.data is None and "ends early" in got.problem


@pytest.mark.parametrize("header", ["x-compress", "compress", "gzip, foo", "aes128gcm", "bzip2"])
def test_an_unknown_coding_is_not_decoded(header):
    got = decode(gzip.compress(TEXT), header, MiB)
    assert got.data is None and got.problem.startswith("unknown content-encoding")


@pytest.mark.parametrize("coding", ["br", "gzip", "deflate", "zstd"])
def test_garbage_is_corrupt(coding):
    got = decode(b"this is not compressed at all, not even a bit" * 3, coding, MiB)
    assert got.data is None and got.problem


def test_a_gzip_checksum_mismatch_is_corrupt():
    wire = bytearray(gzip.compress(TEXT))
    wire[-8] ^= 0xFF  # CRC32
    got = decode(bytes(wire), "gzip", MiB)
    assert got.data is None and "corrupt gzip" in got.problem


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br", "zstd"])
def test_data_after_the_end_is_corrupt(coding):
    got = decode(ENCODERS[coding](TEXT) + b"hidden text after the end", coding, MiB)
    assert got.data is None and got.problem


def test_concatenated_gzip_members_and_zstd_frames_are_one_body():
    assert decode(gzip.compress(b"one ") + gzip.compress(b"two"), "gzip", MiB).data == b"one two"
    assert decode(zstd.compress(b"one ") + zstd.compress(b"two"), "zstd", MiB).data == b"one two"


def test_a_zstd_window_over_8_mib_is_refused():
    params = {zstd.CompressionParameter.window_log: 27}
    wire = zstd.ZstdCompressor(options=params).compress(TEXT, zstd.ZstdCompressor.FLUSH_FRAME)
    # Without a content size in the frame the decoder would need the whole 128 MiB window.
    got = decode(wire, "zstd", MiB)
    assert got.data == TEXT or got.data is None  # small content: the window shrinks to it
    big = zstd.ZstdCompressor(options=params)
    stream = big.compress(bytes(64 * MiB)) + big.flush()
    refused = decode(stream, "zstd", MiB)
    assert refused.data is None and "corrupt zstd" in refused.problem


# -- properties: any chunking inside the decoders, any cut ------------------------

plaintexts = st.one_of(
    st.binary(max_size=4000),
    st.text(max_size=2000).map(lambda s: s.encode() * 3),
)
chains = st.lists(st.sampled_from(sorted(ENCODERS)), min_size=1, max_size=3)


@settings(max_examples=300, deadline=None)
@given(plaintexts, chains, st.integers(1, 70), st.integers(0, 5000))
def test_whole_bodies_decode_to_the_plaintext_up_to_the_limit(plain, applied, step, limit):
    wire = encode(plain, applied)
    with mock.patch.object(decoding, "_STEP", step):  # every chunk boundary
        got = decode(wire, ", ".join(applied), limit)
    assert got.data == plain[:limit]
    assert got.truncated == (len(plain) > limit)


@settings(max_examples=300, deadline=None)
@given(plaintexts, chains, st.integers(1, 70), st.floats(0, 1))
def test_a_cut_body_decodes_to_a_prefix_or_nothing(plain, applied, step, where):
    wire = encode(plain, applied)
    cut = wire[: int(len(wire) * where)]
    with mock.patch.object(decoding, "_STEP", step):
        got = decode(cut, ", ".join(applied), 10_000, complete=False)
    if got.data is None:  # only possible for a corrupt stream: never for a prefix
        pytest.fail(f"a prefix was refused: {got.problem}")
    assert plain.startswith(got.data) and got.truncated
