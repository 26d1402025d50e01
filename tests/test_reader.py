"""The read side: following the journal as it grows, and merging events into exchanges."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.journal.reader import JournalReplaced, events, exchanges, follow, merge
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir
from agentlog.redact import Redactor

KEY = b"k" * 32


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


def later(seconds: float, action) -> threading.Timer:
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


# -- follow -------------------------------------------------------------------


def test_follow_yields_complete_lines_with_their_end_offsets(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b'{"a":1}\n\n{"b":"\r\x0b"}\nnot json\ntorn')
    got = list(follow(path, timeout=0))
    assert [line.data for line in got] == [b'{"a":1}\n', b"\n", b'{"b":"\r\x0b"}\n', b"not json\n"]
    assert [line.end for line in got] == [8, 9, 20, 29]
    assert path.read_bytes()[: got[-1].end].endswith(b"not json\n")


def test_follow_resumes_from_an_offset(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"one\ntwo\nthree\n")
    first = list(follow(path, timeout=0))
    assert [line.data for line in follow(path, first[0].end, timeout=0)] == [
        b"two\n",
        b"three\n",
    ]
    assert list(follow(path, first[-1].end, timeout=0)) == []
    append(path, b"four\n")
    assert list(follow(path, first[-1].end, timeout=0)) == [(b"four\n", first[-1].end + 5)]


@pytest.mark.parametrize("offset", [2, 99])
def test_follow_refuses_an_offset_that_is_not_a_line_start(tmp_path, offset):
    path = tmp_path / "j"
    path.write_bytes(b"one\ntwo\n")
    with pytest.raises(JournalReplaced):
        next(follow(path, offset, timeout=0))


def test_follow_lines_longer_than_a_read(tmp_path):
    path = tmp_path / "j"
    long = b"x" * 200_000 + b"\n"
    path.write_bytes(long + b"short\n" + long)
    assert [line.data for line in follow(path, timeout=0)] == [long, b"short\n", long]


def test_follow_waits_for_the_rest_of_a_torn_line(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b'{"n":1}\n{"n":')
    lines = follow(path, timeout=5, poll=0.01)
    assert next(lines).data == b'{"n":1}\n'
    later(0.2, lambda: append(path, b'2}\n{"n":3}\n'))
    started = time.monotonic()
    assert next(lines) == (b'{"n":2}\n', 16)
    assert next(lines).data == b'{"n":3}\n'
    assert time.monotonic() - started >= 0.15


def test_follow_a_torn_tail_cut_away_by_the_writer_then_new_lines(tmp_path):
    """A crash leaves half a line; the next proxy moves it to .torn and truncates
    the journal back to it: the follower sees the new lines, never the fragment."""
    logs = LogsDir(tmp_path)
    logs.prepare()
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()
    writer.append({"v": 1, "event": "journal", "id": "a", "seq": None})
    writer.close()
    append(logs.journal, b'{"v":1,"event":"request","id":"half-writ')

    seen: list[bytes] = []
    done = threading.Event()

    def read() -> None:
        for line in follow(logs.journal, stop=done.is_set, poll=0.01):
            seen.append(line.data)

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.1)  # the follower now holds the torn bytes as unfinished
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()  # truncates the torn tail, writes a `recovered` event (seq 2 skipped)
    writer.append({"v": 1, "event": "journal", "id": "b" * 60, "seq": None})
    writer.close()
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    done.set()
    reader.join()
    assert [json.loads(line)["seq"] for line in seen] == [1, 3, 4]
    assert b"half-writ" in logs.torn.read_bytes()


def test_follow_says_when_the_journal_is_moved_aside(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"old 1\n")
    lines = follow(path, poll=0.01)
    assert next(lines).data == b"old 1\n"
    append(path, b"old 2\n")
    path.rename(tmp_path / "j.1")
    path.write_bytes(b"new 1\n")
    assert next(lines).data == b"old 2\n"  # the old file is read to its end first
    with pytest.raises(JournalReplaced, match="replaced"):
        next(lines)


def test_follow_says_when_the_journal_is_removed(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"old 1\n")
    lines = follow(path, poll=0.01)
    next(lines)
    path.unlink()
    with pytest.raises(JournalReplaced, match="removed"):
        next(lines)


def test_follow_says_when_the_journal_shrinks_below_what_was_read(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"line 1\nline 2\n")
    lines = follow(path, poll=0.01)
    next(lines), next(lines)
    os.truncate(path, 0)
    with pytest.raises(JournalReplaced, match="shrank"):
        next(lines)


def test_follow_says_when_the_journal_is_rewritten_in_place(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"line 1\nline 2\n")
    lines = follow(path, poll=0.01)
    next(lines), next(lines)
    with open(path, "wb") as f:  # same file, new content, longer than what was read
        f.write(b"rewritten from the start: offset 14 is mid-line now\n")
    with pytest.raises(JournalReplaced, match="line"):
        next(lines)


def test_follow_stops_on_request_or_after_a_quiet_timeout(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"one\n")
    started = time.monotonic()
    assert len(list(follow(path, timeout=0.3, poll=0.01))) == 1
    assert 0.3 <= time.monotonic() - started < 2

    stop = threading.Event()
    later(0.2, stop.set)
    started = time.monotonic()
    assert len(list(follow(path, stop=stop.is_set, poll=0.01))) == 1
    assert 0.2 <= time.monotonic() - started < 2


def test_tail_follows_a_replaced_journal(tmp_path):
    journal = LogsDir(tmp_path).journal
    line = {"event": "request", "id": "OLD", "method": "GET", "scheme": "https"}
    journal.write_text(json.dumps(line) + "\n")
    tail = subprocess.Popen(
        [sys.executable, "-m", "agentlog", "tail", "--logs", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "OLD" in tail.stdout.readline()
        journal.rename(tmp_path / "requests.jsonl.1")
        journal.write_text(json.dumps(line | {"id": "NEW"}) + "\n")
        assert "NEW" in tail.stdout.readline()
        assert "following the new journal" in tail.stderr.readline()
    finally:
        tail.kill()
        tail.wait()


# -- merge ----------------------------------------------------------------------

CLOSING = ("response", "error", "blocked", "websocket")


def request(id: str, streamed: bool) -> dict:
    size = None if streamed else 3
    ref = None if streamed else "bodies/aa/" + "a" * 64
    return {
        "event": "request",
        "id": id,
        "method": "POST",
        "request_bytes": size,
        "request_body": ref,
        "request_body_truncated": False,
    }


def closing(kind: str, id: str, n: int, carries_body: bool) -> dict:
    event = {"event": kind, "id": id, "n": n}
    if carries_body:
        event |= {
            "request_bytes": 100 + n,
            "request_body": f"bodies/{n:02x}/" + "b" * 62,
            "request_body_truncated": n % 2 == 0,
        }
    return event


@st.composite
def journals(draw) -> list[dict]:
    """Events of several exchanges, interleaved; each exchange's request comes first."""
    per_exchange = []
    for i in range(draw(st.integers(0, 5))):
        id = f"ID{i}"
        kinds = draw(st.lists(st.sampled_from(CLOSING), unique=True, max_size=4))
        events = [request(id, draw(st.booleans()))]
        events += [closing(k, id, n, draw(st.booleans())) for n, k in enumerate(kinds)]
        per_exchange.append(events)
    per_exchange.append(
        draw(
            st.lists(
                st.sampled_from(
                    [
                        {"event": "tls_failed", "id": "TLS", "domain": "pinned.test"},
                        {"event": "journal", "id": "J", "action": "start"},
                        {"event": "capture", "id": "C", "action": "open"},
                        {"event": "response", "id": "NO-REQUEST", "status": 200},
                        {"event": "bogus"},
                    ]
                ),
                max_size=4,
            )
        )
    )
    turns = [i for i, events in enumerate(per_exchange) for _ in events]
    order = draw(st.permutations(turns))
    queues = [list(events) for events in per_exchange]
    return [queues[i].pop(0) for i in order]


@given(journals())
def test_merging_event_by_event_like_an_indexer_equals_merging_the_journal(journal):
    """An indexer holds each exchange as a stored row and folds one event in at a
    time, loading only that event's row: it ends with what `exchanges` builds."""
    rows: dict[str, str] = {}  # id -> the exchange as stored JSON
    for event in journal:
        id = event.get("id")
        one = {id: json.loads(rows[id])} if id in rows else {}
        changed = merge(one, event)
        if changed is not None:
            assert changed is one[id]
            rows[id] = json.dumps(changed)
    whole = exchanges(journal)
    assert list(rows) == list(whole)
    assert {id: json.loads(row) for id, row in rows.items()} == whole


@given(
    st.booleans(),
    st.permutations(CLOSING),
    st.sampled_from([None, *CLOSING]),
)
def test_closing_events_merge_the_same_in_any_order(streamed, kinds, carrier):
    """Each closing event nests under its own name whatever the order they come
    in; the streamed request's size comes from the one that carries it."""
    events = [closing(k, "X", CLOSING.index(k), k == carrier) for k in kinds]
    merged = exchanges([request("X", streamed), *events])["X"]
    expected = exchanges([request("X", streamed), *sorted(events, key=lambda e: e["n"])])["X"]
    assert merged == expected
    assert {k: merged[k]["n"] for k in CLOSING} == {k: CLOSING.index(k) for k in CLOSING}
    lifted = merged["request_bytes"]
    assert lifted == (
        100 + CLOSING.index(carrier) if streamed and carrier else None if streamed else 3
    )


def test_streamed_request_size_comes_from_the_first_closing_event_that_has_it():
    journal = [
        request("X", True),
        closing("response", "X", 1, True),
        closing("error", "X", 2, True),
    ]
    merged = exchanges(journal)["X"]
    assert merged["request_bytes"] == 101 and merged["request_body"].startswith("bodies/01/")
    assert merged["error"]["request_bytes"] == 102  # still there, under its own name


def test_merge_says_which_exchange_changed():
    merged: dict[str, dict] = {}
    assert merge(merged, {"event": "response", "id": "X"}) is None  # no request yet
    assert merge(merged, {"event": "journal", "id": "J", "action": "start"}) is None
    made = merge(merged, request("X", False))
    assert made is merged["X"] and made["method"] == "POST"
    changed = merge(merged, {"event": "response", "id": "X", "status": 200})
    assert changed is made and made["response"]["status"] == 200
    tls = merge(merged, {"event": "tls_failed", "id": "T", "domain": "pinned.test"})
    assert tls == {"event": "tls_failed", "id": "T", "domain": "pinned.test"}
    assert list(merged) == ["X", "T"]
    for no_id in ({"event": "request"}, {"event": "request", "id": 7}):
        assert merge(merged, no_id) is None


def test_events_skip_lines_that_are_not_event_objects(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b'[1]\n5\n"x"\nnull\n{"event": "request", "id": "A"}\n{"id": \n{"torn"')
    assert list(events(path)) == [{"event": "request", "id": "A"}]
