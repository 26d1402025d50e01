"""LogsDir: every name in the logs directory, made and read back in one place."""

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from agentlog.logsdir import LogsDir


@given(st.lists(st.floats(1e9, 2e9), min_size=1, max_size=30))
def test_capture_names_sort_in_the_order_they_were_made(gaps):
    """Files opened one after another (several within one second included)
    list oldest first, as the slicer needs them."""
    taken: list[str] = []
    ts = 1_800_000_000.0
    for gap in gaps:
        ts += gap % 3  # often under a second: names collide and get a counter
        taken.append(LogsDir.capture_name(ts, set(taken)))
    assert len(set(taken)) == len(taken)
    assert sorted(taken, key=LogsDir.capture_order) == taken


def test_capture_files_oldest_first(tmp_path):
    names = ["capture_20260101_000000.pcap", "capture_20260101_000000_2.pcap"]
    names += ["capture_20260101_000000_10.pcap", "capture_20251231_235959.pcap"]
    for name in [*names, "capture_x.pcap.tmp", "other.pcap"]:
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in LogsDir(tmp_path).capture_files()] == [
        names[3],
        names[0],
        names[1],
        names[2],
    ]


def test_body_refs_round_trip_and_nothing_else_opens(tmp_path):
    logs = LogsDir(tmp_path)
    digest = hashlib.sha256(b"body").hexdigest()
    ref = LogsDir.body_ref(digest)
    assert ref == f"bodies/{digest[:2]}/{digest}"
    assert logs.body_file(ref) == tmp_path / "bodies" / digest[:2] / digest
    for bad in ("../x", f"bodies/00/{digest}", f"/{ref}", f"{ref}/..", None, 3):
        assert logs.body_file(bad) is None
