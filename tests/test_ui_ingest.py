"""The indexer's ways of reading one journal give one index: a cold build of the
whole of it, an incremental follow of it in pieces, small batches that push
exchanges out of memory (looked up again in index.db). Journals are generated,
hostile lines included; hostile lines never stop the index."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.logsdir import LogsDir
from agentlog.ui import batch as batch_module
from agentlog.ui import index as index_module
from agentlog.ui.index import Indexer
from tests.fakes.journal import JournalMaker
from tests.ui_harness import index_contents

TERMS = ["alpha", "bravo", "x-api-key", "charlie delta", "req_1", "é"]


def dump(db_path: Path) -> dict:
    return index_contents(db_path, TERMS)


def index_whole(root: Path) -> dict:
    indexer = Indexer(LogsDir(root))
    indexer.open(rebuild=True)
    try:
        indexer.catch_up()
        assert not indexer.building
    finally:
        indexer.close()
    return dump(LogsDir(root).index_db)


def index_in_pieces(root: Path, lines: list[bytes], cuts: list[int]) -> dict:
    """The journal written in pieces (a piece may end mid-line), each indexed as it
    lands, by one indexer that is closed and opened again half way."""
    logs = LogsDir(root)
    logs.journal.write_bytes(b"")
    data = b"".join(lines)
    indexer = Indexer(logs)
    indexer.open(rebuild=True)
    try:
        at = 0
        for n, cut in enumerate([*sorted(cuts), len(data)]):
            with open(logs.journal, "ab") as f:
                f.write(data[at:cut])
            at = max(at, cut)
            indexer.catch_up()
            if n == len(cuts) // 2:
                indexer.close()
                indexer = Indexer(logs)
                indexer.open()
    finally:
        indexer.close()
    return dump(logs.index_db)


# -- generated journals -------------------------------------------------------------------

ids = st.sampled_from(["A", "B", "C", "D", "E", "F", "\ud800", "G"])  # a lone surrogate too
texts = st.sampled_from(["alpha", "bravo charlie", "x-api-key", "req_1", "é\u2028", "\0 delta", ""])
headers = st.dictionaries(texts, texts | st.integers() | st.none(), max_size=3)
numbers = st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def journal_events(draw) -> list[bytes]:
    """Lines as the proxy writes them, and lines it never would."""
    lines, seq = [], 0
    for _ in range(draw(st.integers(0, 40))):
        seq += draw(st.sampled_from([1, 1, 1, 0, -1, 2**63]))  # repeats, gaps, too large
        kind = draw(
            st.sampled_from(
                ["request", "response", "error", "blocked", "websocket", "tls_failed", "tcp",
                 "tcp_end", "capture", "journal", "dns", "garbage", "torn-json"]
            )
        )  # fmt: skip
        if kind == "garbage":
            lines.append(draw(st.sampled_from([b"{", b"[]", b"null", b"\xff\xfe", b'{"x":NaN}'])))
            continue
        event = {"v": 1, "event": kind, "id": draw(ids), "seq": seq, "session": "S1",
                 "timestamp": f"2026-01-01T00:00:{seq % 60:02d}Z"}  # fmt: skip
        if kind in ("request", "tcp", "tls_failed"):
            event |= {"method": "GET", "domain": draw(st.sampled_from(["a.test", "b.test"])),
                      "port": draw(numbers), "path": "/" + draw(texts),
                      "headers": draw(headers), "request_body": None}  # fmt: skip
        elif kind in ("response", "error", "blocked", "websocket", "tcp_end"):
            event |= {"status": draw(numbers), "headers": draw(headers),
                      "response_bytes": draw(numbers), "ttfb_ms": draw(numbers)}  # fmt: skip
        if draw(st.booleans()):
            del event["id"]
        line = json.dumps(event).encode()  # json's escapes: a lone surrogate stays one
        lines.append(line[:-1] if kind == "torn-json" else line)
    return [line + b"\n" for line in lines]


@pytest.fixture
def small_batches(monkeypatch):
    """Batches of 3 lines and 5 exchanges in memory: most exchanges are looked up again."""
    monkeypatch.setattr(index_module, "BATCH_LINES", 3)
    monkeypatch.setattr(batch_module, "CACHE_EXCHANGES", 5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(journal_events(), st.lists(st.integers(0, 4000), max_size=4))
def test_cold_build_incremental_and_small_batches_give_one_index(lines, cuts):
    with tempfile.TemporaryDirectory() as tmp:
        whole, pieces, small = (Path(tmp) / name for name in ("whole", "pieces", "small"))
        for root in (whole, pieces, small):
            root.mkdir()
            (root / "requests.jsonl").write_bytes(b"".join(lines))
        expected = index_whole(whole)
        assert index_in_pieces(pieces, lines, [c % (len(b"".join(lines)) + 1) for c in cuts]) == (
            expected
        )
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(index_module, "BATCH_LINES", 3)
            patch.setattr(batch_module, "CACHE_EXCHANGES", 5)
            assert index_whole(small) == expected


def test_a_realistic_journal_read_three_ways_gives_one_index(tmp_path, small_batches):
    """Bodies, errors, 404s; the small batches exercise the look-ups on a large scale."""
    JournalMaker(tmp_path / "small", bodies=50).write(3_000)
    lines = (tmp_path / "small" / "requests.jsonl").read_bytes().splitlines(keepends=True)
    small = index_whole(tmp_path / "small")
    shutil.copytree(tmp_path / "small", tmp_path / "pieces")
    cuts = [len(b"".join(lines[:n])) + 7 for n in (1, 500, 2_000, 4_001)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(index_module, "BATCH_LINES", 5_000)
        patch.setattr(batch_module, "CACHE_EXCHANGES", 10_000)
        whole = index_whole(tmp_path / "small")
        pieces = index_in_pieces(tmp_path / "pieces", lines, cuts)
    assert small == whole == pieces
    assert len(whole["exchanges"]) == 3_000 and whole["search"]["alpha"]


def test_hostile_lines_and_planted_bodies_do_not_stop_the_index(tmp_path):
    """Each of these stopped the indexer thread once (SQLite refused the value, or
    reading the body raised): what follows them must still be indexed."""
    maker = JournalMaker(tmp_path, bodies=3)
    maker.write(2)
    planted = tmp_path / maker.refs[0]
    os.unlink(planted)
    os.symlink("/etc/passwd", planted)  # a body file swapped for a symlink
    hostile = [
        {"event": "request", "id": "\ud800", "seq": 100, "session": "\udfff", "port": 2**70},
        {"event": "request", "id": "big", "seq": 101, "port": 2**63 + 5, "path": "/\0"},
        {"event": "response", "id": "big", "seq": 102, "status": -(2**70), "ttfb_ms": 10**400},
        {"event": "request", "id": "huge-seq", "seq": 2**63},
        {"event": "capture", "id": "c", "seq": 103, "timestamp": "\ud800", "session": 5},
    ]
    with open(tmp_path / "requests.jsonl", "ab") as f:
        for event in hostile:
            f.write(json.dumps(event).encode() + b"\n")
    maker.seq = 200
    with open(tmp_path / "requests.jsonl", "ab") as f:
        f.write(b"".join(maker.exchange(2)))
    indexer = Indexer(LogsDir(tmp_path))
    indexer.open()
    try:
        indexer.catch_up()
    finally:
        indexer.close()
    indexed = dump(LogsDir(tmp_path).index_db)
    ids = [row[1] for row in indexed["exchanges"]]
    assert any("\ufffd" in id for id in ids) and "big" in ids and "huge-seq" not in ids
    assert len(ids) == 5  # two before, two hostile, one after
    db = sqlite3.connect(LogsDir(tmp_path).index_db)
    big = db.execute("SELECT port, path, status, ttfb_ms FROM exchanges WHERE id = 'big'")
    assert big.fetchone() == (None, "/\0", None, None)  # past 64 bits: no value, no crash
    db.close()
    assert [row[0] for row in indexed["events"]] == [1, 103]
    assert indexed["search"]["alpha"] or indexed["search"]["bravo"]


def test_a_failed_commit_is_read_again_and_nothing_is_merged_twice(
    tmp_path, small_batches, monkeypatch
):
    """A transaction that fails after its lines were merged in memory: the indexer
    reads them again from the committed position, as a reindex would."""
    JournalMaker(tmp_path / "logs", bodies=5).write(20)
    shutil.copytree(tmp_path / "logs", tmp_path / "copy")
    commits = []
    finish = Indexer._finish_commit

    def failing(self, *args):
        commits.append(args)
        if len(commits) == 3:  # its batch holds a response whose request is committed
            self.db.execute("ROLLBACK")
            raise sqlite3.InterfaceError("injected")
        finish(self, *args)

    monkeypatch.setattr(Indexer, "_finish_commit", failing)
    indexer = Indexer(LogsDir(tmp_path / "logs"))
    indexer.open()
    try:
        with pytest.raises(sqlite3.InterfaceError):
            indexer.catch_up()
        indexer.catch_up()
    finally:
        indexer.close()
    monkeypatch.setattr(Indexer, "_finish_commit", finish)
    assert dump(LogsDir(tmp_path / "logs").index_db) == index_whole(tmp_path / "copy")
