"""BodyTee: every chunk passes through untouched; the first `cap` bytes are kept."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agentlog.proxy.addons.tee import BodyTee
from tests.addon_support import stream


@given(st.lists(st.binary(max_size=40), max_size=8), st.integers(min_value=0, max_value=100))
def test_a_tee_passes_everything_on_and_keeps_the_first_cap_bytes(chunks, cap):
    tee = BodyTee(cap)
    whole = b"".join(chunks)
    assert [tee(c) for c in chunks] == chunks  # each chunk, as it came
    assert tee(b"") == b""  # mitmproxy's end-of-body call
    assert bytes(tee.kept) == whole[:cap]
    assert tee.size == len(whole)
    assert tee.truncated is (len(whole) > cap)


def test_a_tee_is_what_mitmproxy_calls_for_a_stream():
    tee = BodyTee(4)
    assert stream(tee, b"ab", b"cdef") == b"abcdef"
    assert (bytes(tee.kept), tee.size, tee.truncated) == (b"abcd", 6, True)
