"""The index: requests.jsonl followed into DIR/index.db (SQLite, WAL, FTS5), incrementally.

One row per exchange (the journal's events merged by `journal.reader.merge`),
the other events as they are, and a free-text document per exchange. The index
is derived and mirrors the current journal: it is rebuilt when it is missing,
corrupt or of another schema, and starts over when the journal is replaced.
It remembers where it stopped (byte offset, seq, and hashes of the first line
and of the last line read, which say it is still the same journal), and it
writes that in the same transaction as the rows, so a kill at any moment
resumes exactly. It never writes the journal.
"""

import fcntl
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, MutableMapping
from contextlib import contextmanager
from pathlib import Path

from agentlog.errors import UserError
from agentlog.journal import reader
from agentlog.journal.reader import CLOSING_EVENTS, Follower, JournalReplaced, merge, read_body
from agentlog.logsdir import JOURNAL_MODE, LogsDir
from agentlog.ui.rows import ROW_FIELDS, row_of, search_doc, searchable

SCHEMA_VERSION = "1"
OPENING_EVENTS = (*reader.OPENING_EVENTS, "tls_failed")  # request, tcp relay, tls_failed
BATCH_LINES = 3_000  # one transaction; larger ones cost memory and gain little
CACHE_EXCHANGES = 6_000  # kept in memory (>= a batch's): a closing event finds its request

SCHEMA = f"""
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
CREATE INDEX exchanges_updated ON exchanges(updated_seq);
CREATE INDEX exchanges_domain ON exchanges(domain);
CREATE INDEX exchanges_session ON exchanges(session);
CREATE TABLE events (
    seq INTEGER PRIMARY KEY, kind TEXT NOT NULL, timestamp TEXT NOT NULL,
    session TEXT NOT NULL, data BLOB NOT NULL  -- the journal line
);
-- Contentless: the text lives in the journal and bodies/. A document is written once,
-- when the exchange's text is final (rows.searchable), so none is ever deleted.
CREATE VIRTUAL TABLE search USING fts5(path, headers, body, content='');
INSERT INTO meta VALUES ('schema', '{SCHEMA_VERSION}');
"""

_INSERT_ROW = (
    f"INSERT OR REPLACE INTO exchanges ({', '.join(ROW_FIELDS)}, data) "
    f"VALUES ({', '.join('?' * (len(ROW_FIELDS) + 1))})"
)


class IndexBusy(UserError):
    """Another `agentlog ui` or `reindex` holds this logs directory's index."""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    return db


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def _event(line: bytes) -> dict | None:
    """A journal line as an event with a kind and a seq, or None (garbled)."""
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    seq = event.get("seq")
    return event if isinstance(seq, int) and not isinstance(seq, bool) else None


class _Exchanges(MutableMapping[str, dict]):
    """id -> merged exchange for `merge`: recent ones in memory, older ones from the
    index; beside each, the journal lines it was merged from (what the index stores)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db, self.cache = db, OrderedDict[str, dict]()
        self.lines: dict[str, list[bytes]] = {}

    def __getitem__(self, id: str) -> dict:
        if id in self.cache:
            return self.cache[id]
        row = self.db.execute("SELECT data FROM exchanges WHERE id = ?", (id,)).fetchone()
        if row is None:
            raise KeyError(id)
        self.cache[id] = exchange = merged(row[0])
        self.lines[id] = row[0].split(b"\n")  # the very bytes: a row is the same either way
        return exchange

    def __setitem__(self, id: str, exchange: dict) -> None:
        self.cache[id] = exchange
        self.lines[id] = []

    def __delitem__(self, id: str) -> None:
        del self.cache[id]
        del self.lines[id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.cache)

    def __len__(self) -> int:
        return len(self.cache)

    def trim(self) -> None:
        while len(self.cache) > CACHE_EXCHANGES:
            id, _ = self.cache.popitem(last=False)
            del self.lines[id]


def merged(data: bytes) -> dict:
    """The exchange an index row's `data` (its journal lines) makes."""
    exchanges: dict[str, dict] = {}
    result: dict = {}
    for line in data.split(b"\n"):
        result = merge(exchanges, json.loads(line)) or result
    return result


class _Batch:
    """What one transaction writes: changed exchanges, due documents, other events."""

    def __init__(self) -> None:
        self.changed: dict[str, tuple[dict, int]] = {}  # id -> (exchange, updated_seq)
        self.documents: list[str] = []  # ids whose search document is due
        self.events: list[tuple[int, str, str, str, bytes]] = []  # seq, kind, ts, session, line
        self.lines = 0
        self.last_line = b""
        self.end = 0
        self.seq: int | None = None


class Indexer:
    """Follows the journal into index.db; one per logs directory (it holds a lock)."""

    def __init__(self, logs: LogsDir, poll: float = 0.1) -> None:
        self.logs, self.poll = logs, poll
        self.indexed_seq = 0  # the last seq committed: what readers can see
        self.epoch = 0  # bumped each time the index starts over
        self.indexing = False  # reading a backlog right now
        self._stop = threading.Event()
        self._lock_fd = -1
        self.db: sqlite3.Connection | None = None

    # -- opening --------------------------------------------------------------------

    def open(self, *, rebuild: bool = False) -> None:
        """Take the lock, then use the index there is or make a new one."""
        path = self.logs.index_db
        self._lock_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, JOURNAL_MODE)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise IndexBusy(f"{path} is in use by another agentlog ui or reindex") from None
        os.fchmod(self._lock_fd, JOURNAL_MODE)
        if rebuild or not self._usable():
            self._wipe()
        self.db = connect(path)
        if self.db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0:
            self.db.executescript(SCHEMA)
        self._load_position()

    def _usable(self) -> bool:
        try:
            db = connect(self.logs.index_db)
            try:
                (version,) = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
                return version == SCHEMA_VERSION
            finally:
                db.close()
        except (sqlite3.DatabaseError, TypeError):  # corrupt, not a database, no meta
            return False

    def _wipe(self) -> None:
        """An empty file in place (the lock is on it); its WAL must not be replayed."""
        for suffix in ("-wal", "-shm"):
            Path(f"{self.logs.index_db}{suffix}").unlink(missing_ok=True)
        os.ftruncate(self._lock_fd, 0)

    def _load_position(self) -> None:
        assert self.db is not None
        meta = dict(self.db.execute("SELECT key, value FROM meta").fetchall())
        self.offset = int(meta.get("offset", 0))
        self.seq = int(meta.get("seq", 0))
        self.head: str | None = meta.get("head")
        self.last: tuple[str, int] | None = (
            (meta["last"], int(meta["last_len"])) if "last" in meta else None
        )
        self.indexed_seq = self.seq
        self.exchanges = _Exchanges(self.db)

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
            self.db = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- following --------------------------------------------------------------------

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Follow the journal until `stop()`: the UI's indexer thread."""
        while not self._stop.is_set():
            try:
                self.catch_up(follow=True)
            except JournalReplaced:
                self.start_over()
            except sqlite3.DatabaseError:  # the index broke under us: it is only derived
                self.close_db_and_rebuild()
            except OSError:  # the journal went between a look and an open: look again
                pass
            if not self._stop.is_set():
                time.sleep(self.poll)

    def catch_up(self, *, follow: bool = False) -> None:
        """Index what the journal holds now (and, with `follow`, what comes after,
        until `stop()`); returns at once when there is no journal."""
        journal = self.logs.journal
        if not journal.exists():
            if self.offset:
                self.start_over()
            return
        if not self._same_journal(journal):
            self.start_over()
        with Follower(journal, self.offset, self.poll) as follower:
            while not self._stop.is_set():
                read = self._ingest(follower.lines(timeout=0, stop=self._stop.is_set))
                if not follow:
                    return
                if not read:
                    time.sleep(self.poll)

    def _same_journal(self, journal: Path) -> bool:
        """The journal still starts with the line it started with and still has the
        last line read where it was read."""
        if not self.offset or self.head is None or self.last is None:
            return not self.offset
        try:
            with open(journal, "rb") as f:
                first = f.readline()
                digest, length = self.last
                f.seek(self.offset - length)
                last = f.read(length)
        except (OSError, ValueError):
            return False
        return _digest(first) == self.head and _digest(last) == digest

    def start_over(self) -> None:
        """The journal was replaced: the index mirrors the new one, from its first line."""
        assert self.db is not None
        with self._transaction() as db:
            db.execute("DELETE FROM exchanges")
            db.execute("DELETE FROM events")
            db.execute("INSERT INTO search(search) VALUES ('delete-all')")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
        self._load_position()
        self.epoch += 1

    def close_db_and_rebuild(self) -> None:
        assert self.db is not None
        self.db.close()
        self._wipe()
        self.db = connect(self.logs.index_db)
        self.db.executescript(SCHEMA)
        self._load_position()
        self.epoch += 1

    def _ingest(self, lines: Iterable) -> int:
        """Index `lines` in transactions of BATCH_LINES; returns how many were read."""
        batch, total = _Batch(), 0
        self.indexing = True
        try:
            for line in lines:
                self._add(batch, line.data, line.end)
                if batch.lines >= BATCH_LINES:
                    total += self._commit(batch)
                    batch = _Batch()
            total += self._commit(batch)
        finally:
            self.indexing = False
        return total

    def _add(self, batch: _Batch, data: bytes, end: int) -> None:
        batch.lines += 1
        batch.last_line, batch.end = data, end
        if self.head is None and not self.offset and batch.lines == 1:
            self.head = _digest(data)
        event = _event(data)
        if event is None:
            return
        seq, kind = event["seq"], event["event"]
        batch.seq = seq
        if kind not in OPENING_EVENTS and kind not in CLOSING_EVENTS:
            batch.events.append(
                (
                    seq,
                    kind,
                    str(event.get("timestamp", "")),
                    str(event.get("session", "")),
                    data.rstrip(b"\n"),
                )
            )
            return
        id = event.get("id")
        if not isinstance(id, str):
            return
        before = self.exchanges.get(id) if kind in CLOSING_EVENTS else None
        was_searchable = before is not None and searchable(before)
        exchange = merge(self.exchanges, event)
        if exchange is None:
            return
        self.exchanges.lines[id].append(data)
        batch.changed[id] = (exchange, seq)
        if not was_searchable and searchable(exchange):
            batch.documents.append(id)

    def _commit(self, batch: _Batch) -> int:
        if not batch.lines:
            return 0
        root = self.logs.root
        rows = []
        for id, (exchange, updated_seq) in batch.changed.items():
            row = row_of(exchange, updated_seq)
            lines = self.exchanges.lines[id]
            rows.append((*row.values(), b"\n".join(line.rstrip(b"\n") for line in lines)))
        documents = []
        for id in batch.documents:
            exchange, _ = batch.changed[id]
            path, headers, body = search_doc(exchange, lambda ref: read_body(root, ref))
            documents.append((exchange["seq"], path, headers, body))
        seq = batch.seq if batch.seq is not None else self.seq
        last = _digest(batch.last_line)
        meta = {
            "offset": batch.end,
            "seq": seq,
            "head": self.head,
            "last": last,
            "last_len": len(batch.last_line),
        }
        with self._transaction() as db:
            db.executemany(_INSERT_ROW, rows)
            db.executemany(
                "INSERT INTO search(rowid, path, headers, body) VALUES (?, ?, ?, ?)", documents
            )
            db.executemany("INSERT OR REPLACE INTO events VALUES (?, ?, ?, ?, ?)", batch.events)
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", meta.items())
        self.offset, self.seq = batch.end, seq
        self.last = (last, len(batch.last_line))
        self.indexed_seq = seq
        self.exchanges.trim()
        return batch.lines

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.db is not None
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")


def rebuild(logs: LogsDir) -> Indexer:
    """A new index of the whole journal (`agentlog reindex`); returns it closed."""
    indexer = Indexer(logs)
    indexer.open(rebuild=True)
    try:
        indexer.catch_up()
    finally:
        indexer.close()
    return indexer
