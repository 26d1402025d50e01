"""The journal writer: one thread that owns requests.jsonl.

The proxy's event loop only builds an event and appends it; this thread
assigns `seq`, seals the chain and writes. An event with bodies first waits
in the BodyQueue until they are stored (body_queue.py), so that a slow body
delays only its own exchange. Hand-offs are batched both ways, because
waking a thread costs more than the work: the loop wakes the writer at most
once per loop iteration, the writer writes everything pending with one
write(2) (group commit) and then settles all of that batch's waiters with one
call back into the loop; events nobody waits for are written with the next
batch or within FLUSH_EVERY. A request that must not go on before its event
is on disk awaits `write_ahead`.
"""

import asyncio
import collections
import contextlib
import fcntl
import hashlib
import hmac
import json
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, cast

from agentlog import records
from agentlog.ids import new_id
from agentlog.journal import chain, recovery
from agentlog.journal.bodies import DEFAULT_LIMIT, Body
from agentlog.journal.body_queue import BodyQueue
from agentlog.journal.body_queue import Entry as _Entry
from agentlog.logsdir import JOURNAL_MODE, LogsDir, LogsDirError
from agentlog.redact import Redactor

_BATCH = 512
# Events nobody waits for (responses, errors) ride along with the next
# write-ahead batch, or go out after this long: one thread wake-up saved each.
FLUSH_EVERY = 0.05
# At close, how long bodies still being stored may take before their events
# are written without them.
DRAIN_TIMEOUT = 20.0


class JournalError(Exception):
    """The journal could not be written."""


class JournalWriter:
    def __init__(
        self, logs: LogsDir, key: bytes, redactor: Redactor, body_cap: int = DEFAULT_LIMIT
    ) -> None:
        self._logs = logs
        self._key = key
        self._pending: collections.deque[_Entry] = collections.deque()
        self._wake: queue.SimpleQueue[None] = queue.SimpleQueue()  # cheaper than an Event
        self._kick_scheduled = False
        self._stopping = False
        self._bodies = BodyQueue(
            logs.root, redactor, body_cap, self._pending.extend, lambda: self._wake.put(None)
        )
        try:
            self._fd = os.open(logs.journal, os.O_RDWR | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
        except OSError as e:
            raise LogsDirError(f"cannot open {logs.journal}: {e.strerror}") from e
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._fd)
            raise LogsDirError(f"another agentlog proxy is writing {logs.journal}") from None
        self._size = os.fstat(self._fd).st_size  # ours alone: we hold the flock
        self._whole_end = self._last_newline_before(self._size) + 1  # past the last whole line
        # (seq, line) of the last line written, replaced as one tuple: a reader on
        # another thread never pairs one line's seq with another's HMAC.
        self._head: tuple[int, bytes] = self._read_head()
        self.torn_bytes = self._size - self._whole_end  # an incomplete last line, until `recover`
        self.recovery: Mapping[str, Any] | None = None  # the `recovered` event `recover` wrote
        self._recovered = False
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)

    # -- startup ----------------------------------------------------------

    def recover(
        self,
        session: str,
        *,
        existed: bool = False,
        known_head: tuple[int, str] | None = None,
        accept_cut: bool = False,
    ) -> Mapping[str, Any] | None:
        """Before `start`: make the journal whole and record anything found wrong.

        A torn last line is moved to requests.jsonl.torn. `existed`: a journal was
        kept here before; `known_head`: the head the user kept (a head file). A
        journal that lost whole lines raises JournalCutError, unless `accept_cut`.
        Returns the sealed `journal` `recovered` event, if one was written.
        """
        if self._recovered:
            return self.recovery
        last_seq = self._head[0]
        torn = os.pread(self._fd, min(self.torn_bytes, 4096), self._whole_end)
        found = recovery.Found(
            last_seq=last_seq,
            torn=self.torn_bytes > 0,
            torn_seq=recovery.torn_seq(torn, last_seq),
            existed=existed,
            known_head=known_head,
            holds_known_head=known_head is None or self._holds(known_head),
        )
        plan = recovery.plan(found)
        if plan.cut and not accept_cut:
            raise recovery.JournalCutError(f"{self._logs.journal}: " + "; ".join(plan.problems))
        moved = {"moved_to": None, "moved_bytes": 0, "moved_sha256": None}
        if found.torn:
            moved = self._move_torn_tail()
        if plan.problems:
            event = records.journal_event(
                id=new_id(),
                session=session,
                ts=time.time(),
                action="recovered",
                reason="; ".join(plan.problems),
                **moved,
                torn_seq=found.torn_seq,
                skipped_from=plan.skipped and plan.skipped[0],
                skipped_to=plan.skipped and plan.skipped[1],
            )
            self._write_recovery(event, plan.next_seq, moved)
            self.recovery = event
        self._recovered = True
        return self.recovery

    def _move_torn_tail(self) -> dict:
        """Append the torn last line to requests.jsonl.torn, then cut it from the journal."""
        digest = hashlib.sha256()
        fd = os.open(self._logs.torn, os.O_WRONLY | os.O_APPEND | os.O_CREAT, JOURNAL_MODE)
        with os.fdopen(fd, "ab") as f:
            for pos in range(self._whole_end, self._size, 1 << 20):
                chunk = os.pread(self._fd, min(1 << 20, self._size - pos), pos)
                digest.update(chunk)
                f.write(chunk)
            f.write(b"\n")
            f.flush()
            os.fsync(f.fileno())  # the bytes are safe before they leave the journal
        os.ftruncate(self._fd, self._whole_end)
        moved = {
            "moved_to": self._logs.torn.name,
            "moved_bytes": self._size - self._whole_end,
            "moved_sha256": digest.hexdigest(),
        }
        self._size = self._whole_end
        return moved

    def _write_recovery(
        self, event: Mapping[str, Any], next_seq: int | None, moved: dict[str, Any]
    ) -> None:
        """Write the `recovered` event now, as the line after the last whole one."""
        seq = next_seq if next_seq is not None else self._head[0] + 1
        line = chain.seal({**event, "seq": seq}, self._key, self._head[1])
        try:
            written = 0
            while written < len(line):
                written += os.write(self._fd, line[written:])
        except OSError as e:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            # Put the torn bytes back: the next start finds what this one did.
            if moved["moved_bytes"]:
                with contextlib.suppress(OSError), open(self._logs.torn, "rb") as f:
                    f.seek(-moved["moved_bytes"] - 1, os.SEEK_END)
                    os.write(self._fd, f.read(moved["moved_bytes"]))
            raise LogsDirError(f"cannot record the journal's recovery: {e.strerror}") from e
        self._head = (seq, line)
        self._size += len(line)
        self._whole_end = self._size

    def _holds(self, head: tuple[int, str]) -> bool:
        """Whether the whole lines include `head`: that seq, and a line with that HMAC."""
        seq, mac = head
        if seq == 0:
            return hmac.compare_digest(mac, chain.digest(self._key, b""))
        for line in self._lines_backwards(self._whole_end):
            line_seq = _seq_of(line)
            if line_seq is None or line_seq < seq:
                return False
            if line_seq == seq:
                return hmac.compare_digest(mac, chain.digest(self._key, line))
        return False

    def _lines_backwards(self, end: int) -> Iterator[bytes]:
        """The whole lines before offset `end` (a line start), last first."""
        buf, pos = b"", end
        while pos > 0 or buf:
            cut = buf.rfind(b"\n", 0, len(buf) - 1) + 1
            if cut or pos == 0:
                yield buf[cut:]
                buf = buf[:cut]
                continue
            start = max(0, pos - 65536)
            buf = os.pread(self._fd, pos - start, start) + buf
            pos = start

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

    def _read_head(self) -> tuple[int, bytes]:
        """(seq, line) of the last whole line; (0, b"") if there is none."""
        line = next(self._lines_backwards(self._whole_end), b"")
        if not line:
            return 0, b""
        seq = _seq_of(line)
        if seq is None:
            raise LogsDirError(f"{self._logs.journal}: last line is not a journal event")
        return seq, line

    # -- public -----------------------------------------------------------

    def start(self) -> None:
        """Start writing; a torn last line not yet `recover`ed is recovered first."""
        self.recover(new_id())
        self._bodies.start()
        self._thread.start()

    def append(
        self,
        event: Mapping[str, object],
        bodies: dict[str, Body] | None = None,
        waiter: asyncio.Future | None = None,
    ) -> None:
        """Queue an event (from any thread); it is written in order, within
        FLUSH_EVERY seconds, or at once together with the next write-ahead event;
        an event with bodies once they are stored."""
        # Events are dicts the caller hands over: the writer fills in their body refs.
        if not self._bodies.put(_Entry(cast(dict[str, Any], event), bodies or {}, waiter)):
            return  # the body queue wakes the writer when they are
        if waiter is None or self._kick_scheduled:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on an event loop: wake the writer now
            self._wake.put(None)
            return
        self._kick_scheduled = True
        loop.call_soon(self._kick)  # one wake for everything appended this iteration

    async def write_ahead(
        self, event: Mapping[str, object], bodies: dict[str, Body] | None = None
    ) -> int:
        """Write `event` and return its seq once it is with the OS; JournalError if not."""
        if bodies:
            await self._bodies.room(bodies)  # backpressure while many bodies wait
        waiter = asyncio.get_running_loop().create_future()
        self.append(event, bodies, waiter)
        return await waiter

    def _kick(self) -> None:
        self._kick_scheduled = False
        self._wake.put(None)

    def close(self) -> None:
        """Write everything appended so far, then stop."""
        if self._thread.is_alive():
            self._bodies.drain(DRAIN_TIMEOUT)
        self._stopping = True
        self._wake.put(None)
        if self._thread.is_alive():
            self._thread.join()
        self._bodies.close()
        os.close(self._fd)

    @property
    def seq(self) -> int:
        """The seq of the last line written."""
        return self._head[0]

    @property
    def head(self) -> tuple[int, str]:
        """(seq, HMAC) of the last line written: what the next `prev` will be."""
        seq, line = self._head
        return seq, chain.digest(self._key, line)

    # -- the thread -------------------------------------------------------

    def _run(self) -> None:
        while True:
            with contextlib.suppress(queue.Empty):
                self._wake.get(timeout=FLUSH_EVERY)
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(_BATCH, len(self._pending)))]
                try:
                    outcomes = self._write(batch)
                except Exception as e:  # never let the writer die: refuse, say so, go on
                    print(f"agentlog proxy: journal writer error: {e!r}", file=sys.stderr)
                    error = JournalError(f"journal writer error: {type(e).__name__}")
                    outcomes = [(entry, error) for entry in batch]
                for entry in batch:
                    if entry.inline:
                        self._bodies.advance(entry)
                self._settle(outcomes)
            if self._stopping:
                return

    @staticmethod
    def _settle(outcomes: list[tuple[_Entry, int | BaseException]]) -> None:
        """Resolve the batch's waiters with one call into each loop that waits."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = {}
        for entry, outcome in outcomes:
            if entry.waiter is not None:
                by_loop.setdefault(entry.waiter.get_loop(), []).append((entry.waiter, outcome))
        for loop, waiters in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_resolve, waiters)

    def _write(self, batch: list[_Entry]) -> list[tuple[_Entry, int | BaseException]]:
        """Seal and write `batch`; the outcome of each entry: its seq, or why not."""
        seq, last = self._head
        lines: list[bytes] = []
        outcomes: list[tuple[_Entry, int | BaseException]] = []
        for entry in batch:
            try:
                if entry.inline:  # small and plain: cheaper here than a hand-off
                    self._bodies.store_inline(entry)
                line = chain.seal({**entry.event, "seq": seq + 1}, self._key, last)
            except Exception as e:  # a bad event costs itself, never the writer thread
                outcomes.append((entry, JournalError(f"cannot record event: {type(e).__name__}")))
                continue
            seq, last = seq + 1, line
            lines.append(line)
            outcomes.append((entry, seq))
        data = b"".join(lines)
        try:
            written = 0
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError as e:
            # Leave no half line behind: the chain must stay whole.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, self._size)
            error = JournalError(f"journal write failed: {e.strerror or e}")
            print(f"agentlog proxy: {error}; {len(lines)} event(s) refused", file=sys.stderr)
            return [(entry, error) for entry, _ in outcomes]
        self._head = (seq, last)
        self._size += len(data)
        return outcomes


def _seq_of(line: bytes) -> int | None:
    try:
        return int(json.loads(line)["seq"])
    except (ValueError, TypeError, KeyError):
        return None


def _resolve(waiters: list[tuple[asyncio.Future, int | BaseException]]) -> None:
    for waiter, outcome in waiters:
        if waiter.done():  # the request was cancelled meanwhile
            continue
        if isinstance(outcome, BaseException):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
