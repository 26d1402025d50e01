"""The index: requests.jsonl followed into DIR/index.db (SQLite, WAL, FTS5), incrementally.

One row per exchange (the journal's events merged by `journal.reader.merge`),
the other events as they are, and a free-text document per exchange. The index
is derived and mirrors the current journal: it is rebuilt when it is missing,
corrupt or of another schema, and starts over when the journal is replaced.
It remembers where it stopped (byte offset, seq, and hashes of the first line
and of the last line read, which say it is still the same journal), and it
writes that in the same transaction as the rows, so a kill at any moment
resumes exactly. It never writes the journal. A new index is built cold
(schema.py) until it first reaches the journal's end.
"""

import fcntl
import hashlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, suppress
from pathlib import Path

from agentlog.errors import UserError
from agentlog.journal.reader import Follower, JournalReplaced
from agentlog.logsdir import JOURNAL_MODE, LogsDir
from agentlog.readfile import UnsafeFile, open_regular
from agentlog.ui import schema
from agentlog.ui.batch import BATCH_LINES, Batch, BodyTexts, Exchanges
from agentlog.ui.rows import ROW_FIELDS, SEARCH_BODY_CAP, search_text
from agentlog.ui.schema import SCHEMA, SCHEMA_VERSION, connect

__all__ = ["SCHEMA", "IndexBusy", "Indexer", "rebuild"]

_INSERT_ROW = schema.insert_row(ROW_FIELDS)


class IndexBusy(UserError):
    """Another `agentlog ui` or `reindex` holds this logs directory's index."""


def _digest(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


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
        self._reader: sqlite3.Connection | None = None  # looks up older exchanges
        self._commits: ThreadPoolExecutor | None = None  # the commit thread
        self._committing: Future | None = None  # its transaction in flight

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
            self.db.executescript(schema.TABLES)
        self._commits = ThreadPoolExecutor(1, thread_name_prefix="index-commit")
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
        self.indexed_seq = self._batched_seq = self.seq
        self.db.execute(schema.STAGING)
        self.building = "building" in meta
        schema.tune(self.db, building=self.building)
        if self._reader is not None:
            self._reader.close()
        self._reader = schema.reader(self.logs.index_db)
        self.exchanges = Exchanges(self._load)
        logs = self.logs
        self.body_texts = BodyTexts(lambda ref: _body_text(logs, ref))

    def _load(self, id: str) -> bytes | None:
        """An indexed exchange's data (its journal lines): it was committed, since the
        exchanges of the batch in flight are all still in memory (Exchanges.recent)."""
        assert self._reader is not None
        row = self._reader.execute("SELECT data FROM exchanges WHERE id = ?", (id,)).fetchone()
        return None if row is None else row[0]

    def close(self) -> None:
        with suppress(sqlite3.Error):  # a transaction that failed is rolled back: no loss
            self._settle()
        if self._commits is not None:
            self._commits.shutdown()
            self._commits = None
        if self._reader is not None:
            self._reader.close()
            self._reader = None
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
                if self.building and not self._stop.is_set():
                    self._finish_build()
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
            for name in schema.INDEX_NAMES:
                db.execute(f"DROP INDEX IF EXISTS {name}")
            db.execute("DELETE FROM exchanges")
            db.execute("DELETE FROM events")
            db.execute("INSERT INTO search(search) VALUES ('delete-all')")
            db.execute("DELETE FROM meta WHERE key != 'schema'")
            db.execute("INSERT INTO meta VALUES ('building', '1')")
        self._load_position()
        self.epoch += 1

    def _finish_build(self) -> None:
        """The cold build reached the journal's end: the secondary indexes, at once."""
        with self._transaction() as db:
            for statement in schema.INDEXES.split(";"):
                if statement.strip():
                    db.execute(statement)
            db.execute("DELETE FROM meta WHERE key = 'building'")
        assert self.db is not None
        self.building = False
        schema.tune(self.db, building=False)

    def close_db_and_rebuild(self) -> None:
        assert self.db is not None
        with suppress(sqlite3.Error):  # what broke the index may break its last commit too
            self._settle()
        self.db.close()
        self._wipe()
        self.db = connect(self.logs.index_db)
        self.db.executescript(schema.TABLES)
        self._load_position()
        self.epoch += 1

    def _ingest(self, lines: Iterable) -> int:
        """Index `lines` in transactions of BATCH_LINES; returns how many were read."""
        batch, total = Batch(self.exchanges, self.body_texts), 0
        self.indexing = True
        try:
            for line in lines:
                if self.head is None and not self.offset and not batch.lines:
                    self.head = _digest(line.data)
                batch.add(line.data, line.end)
                if batch.lines >= BATCH_LINES:
                    total += self._commit(batch)
                    batch = Batch(self.exchanges, self.body_texts)
            total += self._commit(batch)
            self._settle()
        except BaseException:
            # What is in memory may be ahead of what was committed: read again from
            # the committed position with nothing remembered (a replayed line must
            # not be merged twice).
            with suppress(Exception):
                self._settle()
            self.exchanges = Exchanges(self._load)
            self._batched_seq = self.seq
            raise
        finally:
            self.indexing = False
        return total

    def _commit(self, batch: Batch) -> int:
        """Write a batch in one transaction, with where the index stops: its rows here,
        then on the commit thread the search documents (FTS5's tokenizing, the
        largest part) and the COMMIT, while this thread reads the next batch."""
        if not batch.lines:
            return 0
        rows = batch.rows()
        seq = self._batched_seq = batch.seq if batch.seq is not None else self._batched_seq
        last = (_digest(batch.last_line), len(batch.last_line))
        meta = {
            "offset": batch.end,
            "seq": seq,
            "head": self.head,
            "last": last[0],
            "last_len": last[1],
        }
        self._settle()
        db = self.db
        assert db is not None
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_INSERT_ROW, rows)
            db.executemany(schema.STAGE_DOCUMENT, batch.documents)
            db.executemany(schema.INSERT_EVENT, batch.events)
            db.executemany(schema.INSERT_META, meta.items())
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.exchanges.settle({row[0]: row[-1] for row in rows})  # id -> data
        assert self._commits is not None
        self._committing = self._commits.submit(self._finish_commit, batch.end, seq, last)
        return batch.lines

    def _finish_commit(self, offset: int, seq: int, last: tuple[str, int]) -> None:
        """The commit thread: documents tokenized, the transaction committed, and only
        then its position published (readers see `indexed_seq`)."""
        db = self.db
        assert db is not None
        try:
            db.execute(schema.INSERT_STAGED)
            db.execute("DELETE FROM temp.staged")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        self.offset, self.seq, self.last = offset, seq, last
        self.indexed_seq = seq

    def _settle(self) -> None:
        """Wait for the transaction in flight on the commit thread; raise what it raised."""
        committing, self._committing = self._committing, None
        if committing is not None:
            committing.result()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        assert self.db is not None
        self._settle()
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


def _body_text(logs: LogsDir, ref: object) -> str:
    """A stored body's search text: what search sees of it, its first SEARCH_BODY_CAP
    bytes, is all that is read (a body may be 1 MiB; the page's view of it checks
    its hash, this does not). "" when there is none, or the file is not a regular
    one (a planted symlink, a FIFO): it is left unsearched."""
    path = logs.body_file(ref)
    if path is None:
        return ""
    try:
        fd = open_regular(path)
        try:
            return search_text(os.read(fd, SEARCH_BODY_CAP))
        finally:
            os.close(fd)
    except (UnsafeFile, OSError):
        return ""
