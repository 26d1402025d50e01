"""index.db's tables, and how the indexer's connection to it is set up.

A new index is built cold: its tables first, without the domain and session
indexes, which SQLite then makes in one sort each when the build reaches the
journal's end (`INDEXES`), far cheaper than keeping them up to date row by row.
Until then the meta row `building` says so, and a restart (even after kill -9)
goes on building.
"""

import sqlite3
from pathlib import Path

SCHEMA_VERSION = "2"

TABLES = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE exchanges (
    seq INTEGER PRIMARY KEY,  -- the opening event's seq: newest first is seq descending
    id TEXT NOT NULL UNIQUE,
    updated_seq INTEGER NOT NULL,
    timestamp TEXT NOT NULL,
    session TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    method TEXT, scheme TEXT, domain TEXT, port INTEGER, path TEXT, status INTEGER,
    outcome TEXT NOT NULL,
    request_bytes INTEGER, response_bytes INTEGER, ttfb_ms REAL, duration_ms REAL,
    pcap_file TEXT, capture_id TEXT,
    data BLOB NOT NULL  -- the journal lines it is merged from, newline-separated
);
-- Kept from the start: the live feed walks it, `count(*)` reads it (both while a
-- build goes on), and it costs little (updated_seq grows: rows go at its end).
CREATE INDEX exchanges_updated ON exchanges(updated_seq);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, timestamp TEXT NOT NULL,
    session TEXT NOT NULL, data BLOB NOT NULL  -- the journal line
);
-- Contentless: the text lives in the journal and bodies/. A document is written once,
-- when the exchange's text is final (rows.searchable), so none is ever deleted.
-- No column sizes: nothing ranks by them.
CREATE VIRTUAL TABLE search USING fts5(path, headers, body, content='', columnsize=0);
INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
INSERT INTO meta VALUES ('building', '1');
"""

# What the list's filters walk; made when a cold build is done.
INDEXES = """
CREATE INDEX exchanges_domain ON exchanges(domain);
CREATE INDEX exchanges_session ON exchanges(session);
"""
INDEX_NAMES = ("exchanges_domain", "exchanges_session")

# A finished index: what `agentlog reindex` leaves.
SCHEMA = TABLES + INDEXES + "DELETE FROM meta WHERE key = 'building';"

# A batch's search documents wait in a temporary table (the connection's own, in
# memory, in the same transaction), to be tokenized by one statement on the
# commit thread: SQLite runs it without the GIL, beside the next batch's parsing.
STAGING = "CREATE TEMP TABLE IF NOT EXISTS staged (seq INTEGER, path, headers, body)"
STAGE_DOCUMENT = "INSERT INTO temp.staged VALUES (?, ?, ?, ?)"
INSERT_STAGED = (
    "INSERT INTO search(rowid, path, headers, body)"
    " SELECT seq, path, headers, body FROM temp.staged ORDER BY rowid"
)
INSERT_EVENT = "INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)"
INSERT_META = "INSERT OR REPLACE INTO meta VALUES (?, ?)"


def insert_row(fields: tuple[str, ...]) -> str:
    return (
        f"INSERT OR REPLACE INTO exchanges ({', '.join(fields)}, data) "
        f"VALUES ({', '.join('?' * (len(fields) + 1))})"
    )


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA temp_store=MEMORY")
    return db


def reader(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    db.execute("PRAGMA query_only=1")
    return db


def tune(db: sqlite3.Connection, *, building: bool) -> None:
    """A cold build trades durability for speed: the index is derived, and a kill
    loses nothing with WAL (only a power cut could, and a broken index is rebuilt).
    Its larger cache keeps the b-trees' upper pages in memory (a cap, not a reserve)."""
    db.execute(f"PRAGMA synchronous={'OFF' if building else 'NORMAL'}")
    db.execute(f"PRAGMA cache_size={-32_768 if building else -2_000}")  # KiB
