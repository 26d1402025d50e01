"""The journal writer: one thread that owns requests.jsonl.

The proxy's event loop only builds an event and hands it over; this thread
stores bodies, assigns `seq`, seals the chain and writes. Events that arrive
together are written with one write(2) (group commit). A submitter that must
not go on before its event is on disk (the write-ahead request event) waits
on the Future that `submit` returns.
"""

import contextlib
import fcntl
import json
import os
import queue
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from agentlog.journal import chain
from agentlog.journal.bodies import Body, store
from agentlog.logsdir import JOURNAL_MODE, LogsDir, LogsDirError
from agentlog.redact import Redactor

_BATCH = 512


@dataclass
class _Entry:
    event: dict
    bodies: dict[str, Body]
    done: Future = field(default_factory=Future)


class JournalError(Exception):
    """The journal could not be written."""


class JournalWriter:
    def __init__(self, logs: LogsDir, key: bytes, redactor: Redactor) -> None:
        self._logs = logs
        self._key = key
        self._redactor = redactor
        self._queue: queue.SimpleQueue[_Entry | None] = queue.SimpleQueue()
        try:
            self._fd = os.open(logs.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
        except OSError as e:
            raise LogsDirError(f"cannot open {logs.journal}: {e.strerror}") from e
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LogsDirError(f"another agentlog proxy is writing {logs.journal}") from None
        self.torn_bytes = self._recover_torn_tail()
        self._last_line, self.seq = self._read_head()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)

    # -- startup ----------------------------------------------------------

    def _recover_torn_tail(self) -> int:
        """Move an incomplete last line (a crash mid-write) aside so the chain goes on."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return 0
        tail_start = self._last_newline_before(size) + 1
        if tail_start == size:
            return 0
        torn = os.pread(self._fd, size - tail_start, tail_start)
        with open(self._logs.torn, "ab") as f:
            f.write(torn + b"\n")
        os.ftruncate(self._fd, tail_start)
        return len(torn)

    def _last_newline_before(self, end: int) -> int:
        pos = end
        while pos > 0:
            start = max(0, pos - 65536)
            chunk = os.pread(self._fd, pos - start, start)
            i = chunk.rfind(b"\n")
            if i >= 0:
                return start + i
            pos = start
        return -1

    def _read_head(self) -> tuple[bytes, int]:
        size = os.fstat(self._fd).st_size
        if size == 0:
            return b"", 0
        start = self._last_newline_before(size - 1) + 1
        line = os.pread(self._fd, size - start, start)
        try:
            seq = int(json.loads(line)["seq"])
        except (ValueError, TypeError, KeyError) as e:
            raise LogsDirError(f"{self._logs.journal}: last line is not a journal event") from e
        return line, seq

    # -- public -----------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: dict, bodies: dict[str, Body] | None = None) -> Future:
        entry = _Entry(event, bodies or {})
        self._queue.put(entry)
        return entry.done

    def close(self) -> None:
        """Write everything queued so far, then stop."""
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join()
        os.close(self._fd)

    @property
    def head(self) -> tuple[int, str]:
        """(seq, HMAC) of the last line written: what the next `prev` will be."""
        return self.seq, chain.digest(self._key, self._last_line)

    # -- the thread -------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch = [first]
            while first is not None and len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in batch
            self._write([e for e in batch if e is not None])
            if stop:
                return

    def _store_bodies(self, entry: _Entry) -> None:
        for name, body in entry.bodies.items():
            try:
                entry.event[name] = store(self._logs.root, body, self._redactor)
            except Exception as e:  # the event is still worth writing without its body
                entry.event[name] = None
                entry.event[f"{name}_error"] = getattr(e, "strerror", None) or repr(e)

    def _write(self, batch: list[_Entry]) -> None:
        seq, last = self.seq, self._last_line
        lines, sealed = [], []
        for entry in batch:
            self._store_bodies(entry)
            try:
                line = chain.seal({**entry.event, "seq": seq + 1}, self._key, last)
            except Exception as e:  # a bad event costs itself, never the writer thread
                entry.done.set_exception(JournalError(f"cannot record event: {e!r}"))
                continue
            seq, last = seq + 1, line
            lines.append(line)
            sealed.append(entry)
        batch = sealed
        if not batch:
            return
        data = b"".join(lines)
        size = os.fstat(self._fd).st_size
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as e:
            # Leave no half line behind: the chain must stay whole.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, size)
            error = JournalError(f"journal write failed: {e.strerror or e}")
            print(f"agentlog proxy: {error}; {len(batch)} event(s) refused", file=sys.stderr)
            for entry in batch:
                entry.done.set_exception(error)
            return
        self.seq, self._last_line = seq, last
        first_seq = seq - len(batch) + 1
        for i, entry in enumerate(batch):
            entry.done.set_result(first_seq + i)
