"""The UI's indexer: resumes exactly after kill -9, waits out a torn line, follows a
replaced journal, rebuilds a broken index; and the pure parts under arbitrary input."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.logsdir import LogsDir
from agentlog.ui import query
from agentlog.ui.index import SCHEMA, Indexer
from agentlog.ui.rows import ROW_FIELDS, row_of
from tests.fakes.journal import JournalMaker
from tests.harness import agentlog
from tests.ui_harness import index_contents, last_seq, start_ui

pytestmark = pytest.mark.timeout(300)
TERMS = ["charlie", "claude", "cloudflare", "api", "v1 alpha", "req_00000000000000000012"]


def dump(db_path: Path) -> dict:
    return index_contents(db_path, TERMS)


def reindexed(logs: Path, tmp_path: Path) -> dict:
    """A full `agentlog reindex` of a copy of the same journal and bodies."""
    copy = tmp_path / "copy"
    copy.mkdir(parents=True)
    shutil.copyfile(logs / "requests.jsonl", copy / "requests.jsonl")
    os.symlink(logs / "bodies", copy / "bodies")
    result = agentlog("reindex", "--logs", copy)
    assert result.returncode == 0, result.stderr
    return dump(copy / "index.db")


def test_kill_9_mid_ingest_then_restart_equals_a_full_reindex(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    JournalMaker(logs).write(60_000)
    total = last_seq(logs)
    ui = start_ui(logs)
    deadline = time.monotonic() + 60
    while (seq := ui.status()["indexed_seq"]) < 20_000:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    ui.kill()
    assert seq < total, "the index finished before the kill: make the journal longer"
    ui = start_ui(logs)
    ui.wait_indexed(total, timeout=120)
    assert ui.stop() == 0
    indexed = dump(logs / "index.db")
    assert len(indexed["exchanges"]) == 60_000
    assert all(indexed["search"].values())
    assert indexed == reindexed(logs, tmp_path)


def test_a_torn_last_line_waits_until_it_is_whole(tmp_path):
    logs = LogsDir(tmp_path)
    maker = JournalMaker(tmp_path)
    maker.write(10)
    torn_exchange = list(maker.exchange(10))
    request = torn_exchange[0]
    with open(logs.journal, "ab") as f:
        f.write(request[:100])  # a writer died mid-line, or is mid-write
    indexer = Indexer(logs)
    indexer.open()
    indexer.catch_up()
    assert count(logs) == 10
    offset = indexer.offset
    assert offset == logs.journal.stat().st_size - 100
    with open(logs.journal, "ab") as f:
        f.write(request[100:] + torn_exchange[1])
    indexer.catch_up()
    indexer.close()
    assert count(logs) == 11
    (newest,) = rows(logs, "SELECT * FROM exchanges ORDER BY seq DESC LIMIT 1")
    assert newest["id"] == json.loads(request)["id"] and newest["state"] == "closed"
    assert dump(logs.index_db) == reindexed(tmp_path, tmp_path / "re")


def test_a_journal_moved_aside_is_followed_by_the_new_one(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    JournalMaker(logs, seed=1).write(20)
    ui = start_ui(logs)
    ui.wait_indexed(last_seq(logs))
    with ui.client() as client, client.stream("GET", "/api/live") as live:
        os.rename(logs / "requests.jsonl", logs / "requests.jsonl.old")
        new = JournalMaker(logs, seed=2)
        new.write(3)
        events = [json.loads(line) for line in (logs / "requests.jsonl").open("rb")]
        new_ids = {e["id"] for e in events if e["event"] == "request"}
        deadline = time.monotonic() + 20
        while {r["id"] for r in ui.get("/api/exchanges").json()["items"]} != new_ids:
            assert time.monotonic() < deadline, ui.get("/api/status").json()
            time.sleep(0.1)
        lines = []
        for line in live.iter_lines():
            lines.append(line)
            if line == "event: reset":
                break
    assert "event: reset" in lines
    assert ui.status()["exchanges"] == 3
    assert ui.stop() == 0
    assert (logs / "requests.jsonl.old").exists()  # the index never touches the journal


def test_resume_after_a_stop_reads_only_what_is_new_and_equals_a_reindex(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    maker = JournalMaker(logs)
    maker.write(100)
    ui = start_ui(logs)
    ui.wait_indexed(last_seq(logs))
    assert ui.stop() == 0
    with open(logs / "requests.jsonl", "ab") as f:
        for n in range(100, 130):
            f.write(b"".join(maker.exchange(n)))
    ui = start_ui(logs)
    ui.wait_indexed(last_seq(logs))
    assert ui.status()["exchanges"] == 130
    assert ui.stop() == 0
    assert dump(logs / "index.db") == reindexed(logs, tmp_path)


@pytest.mark.parametrize("damage", ["garbage", "old-schema", "empty-file"])
def test_a_broken_or_old_index_is_rebuilt(tmp_path, damage):
    logs = LogsDir(tmp_path)
    JournalMaker(tmp_path).write(30)
    if damage == "garbage":
        logs.index_db.write_bytes(b"not a database at all " * 200)
    elif damage == "old-schema":
        db = sqlite3.connect(logs.index_db)
        db.executescript(SCHEMA)
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema'")
        db.execute("INSERT INTO events VALUES (999999, 'stale', '', '', x'7b7d')")
        db.commit()
        db.close()
    else:
        logs.index_db.write_bytes(b"")
    indexer = Indexer(logs)
    indexer.open()
    indexer.catch_up()
    indexer.close()
    assert count(logs) == 30
    assert dump(logs.index_db) == reindexed(tmp_path, tmp_path / "re")


def test_one_indexer_per_logs_directory(tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    JournalMaker(logs).write(5)
    ui = start_ui(logs)
    try:
        result = agentlog("reindex", "--logs", logs)
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "in use" in result.stderr
    finally:
        assert ui.stop() == 0


def test_reindex_without_a_journal_is_one_line(tmp_path):
    result = agentlog("reindex", "--logs", tmp_path)
    assert result.returncode == 2 and "no journal" in result.stderr


def count(logs: LogsDir) -> int:
    return rows(logs, "SELECT count(*) AS n FROM exchanges")[0]["n"]


def rows(logs: LogsDir, sql: str) -> list[dict]:
    db = sqlite3.connect(logs.index_db)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute(sql)]
    finally:
        db.close()


# -- the pure parts --------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)
events = st.dictionaries(
    st.sampled_from(["event", "id", "seq", "method", "domain", "port", "path", "status",
                     "response", "error", "blocked", "headers", "pcap_file", "timestamp"]),
    json_values,
)  # fmt: skip


# Generating nested JSON is slow on a loaded machine: not a failure of the code.
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events, st.integers(min_value=0, max_value=2**62))
def test_a_row_is_typed_whatever_the_exchange_holds(exchange, seq):
    row = row_of(exchange, seq)
    assert tuple(row) == ROW_FIELDS
    for name in ("method", "scheme", "domain", "path", "pcap_file", "capture_id"):
        assert row[name] is None or isinstance(row[name], str)
    for name in ("port", "status", "request_bytes", "response_bytes"):
        assert row[name] is None or type(row[name]) is int
    assert row["state"] in ("open", "closed") and isinstance(row["outcome"], str)
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE TABLE t ({', '.join(ROW_FIELDS)})")
    db.execute(f"INSERT INTO t VALUES ({', '.join('?' * len(ROW_FIELDS))})", list(row.values()))


@settings(max_examples=300)
@given(st.text())
def test_any_free_text_is_a_valid_search(text):
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE search USING fts5(path, headers, body, content='')")
    db.execute("INSERT INTO search(rowid, path, headers, body) VALUES (1, ?, '', '')", (text,))
    match = query.fts_query(text)
    if match is not None:
        found = db.execute("SELECT rowid FROM search WHERE search MATCH ?", (match,)).fetchall()
        assert found == [(1,)]  # a document matches every term of its own text


@given(st.text(max_size=30))
def test_any_domain_glob_is_valid_sql(pattern):
    clauses, params = query.where(query.Filters(domain=pattern))
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE exchanges (domain)")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    db.execute(f"SELECT * FROM exchanges e {where}", params).fetchall()
