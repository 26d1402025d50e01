"""Reading the journal: lines (followed as they are written), events, and exchanges
(all events of one id, merged)."""

import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import NamedTuple

from agentlog.journal import schema
from agentlog.logsdir import LogsDir
from agentlog.readfile import UnsafeFile, open_regular, read_regular

# Events that open an exchange (an HTTP request, a raw TCP relay), and those that
# close one; closing events' fields are merged under their own name.
OPENING_EVENTS = ("request", "tcp")
CLOSING_EVENTS = ("response", "error", "blocked", "websocket", "tcp_end")

# The proxy keeps at most --body-cap (1 MiB by default) of a body; a body file
# larger than this was not written by it.
MAX_BODY_BYTES = 1 << 30


def lines(path: Path) -> Iterator[bytes]:
    """The journal's lines; UnsafeFile if it is not a regular file (a FIFO, a device)."""
    with open(open_regular(path, follow_symlinks=True), "rb") as f:
        yield from f


class Line(NamedTuple):
    data: bytes  # one complete line, newline included
    end: int  # the byte offset just past it: where to resume


class JournalReplaced(Exception):
    """The path no longer names the file being followed, or the file shrank or was
    rewritten under lines already read: offsets into the old one mean nothing now."""


_CHUNK = 1 << 16


class Follower:
    """A cursor on one open journal file, from a line start on.

    Holding the file open is what lets it notice the path being pointed at
    another file; `offset` is always the end of the last line handed out.
    """

    def __init__(self, path: Path, offset: int = 0, poll: float = 0.1) -> None:
        self.path, self.offset, self.poll = path, offset, poll
        self._fd = open_regular(path, follow_symlinks=True)

    def __enter__(self) -> "Follower":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def lines(
        self, *, stop: Callable[[], bool] | None = None, timeout: float | None = None
    ) -> Iterator[Line]:
        """Complete lines as they are written; see `follow`."""
        fd, last_line_at = self._fd, time.monotonic()
        partial: list[bytes] = []  # the start of a line longer than one read
        pending = 0  # its length
        while True:
            # Checked before every read: the caller may take its time between lines.
            _check_line_start(fd, self.offset, self.path)
            chunk = os.pread(fd, _CHUNK, self.offset + pending)
            if chunk:
                cut = chunk.rfind(b"\n") + 1
                if not cut:
                    partial.append(chunk)
                    pending += len(chunk)
                    continue
                for data in b"".join([*partial, chunk[:cut]]).split(b"\n")[:-1]:
                    self.offset += len(data) + 1
                    yield Line(data + b"\n", self.offset)
                partial, pending = [chunk[cut:]], len(chunk) - cut
                last_line_at = time.monotonic()
            else:
                partial, pending = [], 0  # a torn last line: read again from its start
                _check_same_file(fd, self.path)
                if timeout is not None and time.monotonic() - last_line_at >= timeout:
                    return
                time.sleep(self.poll)
            if stop is not None and stop():
                return


def follow(
    path: Path,
    offset: int = 0,
    *,
    stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
    poll: float = 0.1,
) -> Iterator[Line]:
    """Every complete line from byte `offset` on (a line start), as it is written.

    A torn last line is re-read from its start until it is complete: a writer
    that recovers from a crash truncates it away, and new lines then begin
    where it began. Ends when `stop()` is true, or after `timeout` seconds
    without a new line (0: at the end of what is there now; None: never).
    Raises JournalReplaced when the path stops naming this file (moved aside,
    replaced, removed) once it has been read to its end, or when the file
    shrinks or is rewritten under a line already yielded.
    """
    with Follower(path, offset, poll) as follower:
        yield from follower.lines(stop=stop, timeout=timeout)


def _check_line_start(fd: int, offset: int, path: Path) -> None:
    """`offset` still ends a line: the file did not shrink or get rewritten under us."""
    size = os.fstat(fd).st_size
    if offset > size:
        raise JournalReplaced(f"{path} shrank to {size} bytes, below offset {offset}")
    if offset > 0 and os.pread(fd, 1, offset - 1) != b"\n":
        raise JournalReplaced(f"{path}: offset {offset} is not the start of a line")


def _check_same_file(fd: int, path: Path) -> None:
    mine = os.fstat(fd)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        raise JournalReplaced(f"{path} was moved aside or removed") from None
    if (named.st_dev, named.st_ino) != (mine.st_dev, mine.st_ino):
        raise JournalReplaced(f"{path} was replaced by another file")


class MalformedEvent(ValueError):
    """A journal line that is not a well-formed event; the message says why."""


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):  # 1e999: JSON, but no number json.dumps can write back
        raise ValueError(f"{text} is too large for a number")
    return number


def parse_event(line: bytes) -> dict:
    """One journal line as a well-formed event (journal.schema); MalformedEvent if it
    is not one: not UTF-8, not JSON (NaN and 1e999 are not), not an object, a
    field of the wrong type."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedEvent("not UTF-8") from None
    try:
        event = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except ValueError as e:
        raise MalformedEvent(f"not JSON ({e})") from None
    except RecursionError:
        raise MalformedEvent("nested too deeply") from None
    why = schema.problem(event)
    if why is not None:
        raise MalformedEvent(why)
    return event


def events(path: Path, skipped: Callable[[int, str], None] | None = None) -> Iterator[dict]:
    """Every complete, well-formed event. A torn last line (a write cut short) is
    left out; any other line that is not an event (parse_event) is skipped and
    told to `skipped(line number, why)`."""
    for number, line in enumerate(lines(path), 1):
        if not line.endswith(b"\n"):
            return
        try:
            event = parse_event(line)
        except MalformedEvent as e:
            if skipped is not None:
                skipped(number, str(e))
            continue
        yield event


def merge(exchanges: MutableMapping[str, dict], event: Mapping) -> dict | None:
    """Fold one event into `exchanges` (id -> exchange); return the exchange it
    made or changed, or None when the event belongs to no exchange.

    An exchange is the opening event (a request, a TCP relay) with closing
    events nested under their names. A streamed request's size and body ref arrive with its closing
    event and are lifted into the request part (from the first closing event
    that has them). A closing event whose request is not in `exchanges` is
    dropped (the request is written first), and so is an event without an id.
    """
    kind, id = event.get("event"), event.get("id")
    if not isinstance(id, str):
        return None
    if kind in OPENING_EVENTS or kind == "tls_failed":
        exchanges[id] = dict(event)
        return exchanges[id]
    exchange = exchanges.get(id) if kind in CLOSING_EVENTS else None
    if exchange is None:
        return None
    exchange[kind] = dict(event)
    if exchange.get("request_bytes") is None and event.get("request_bytes") is not None:
        for field in ("request_bytes", "request_body", "request_body_truncated"):
            exchange[field] = event.get(field)
    return exchange


def exchanges(stream: Iterable[dict]) -> dict[str, dict]:
    """id -> exchange (see `merge`), in journal order."""
    merged: dict[str, dict] = {}
    for event in stream:
        merge(merged, event)
    return merged


def find(merged: dict[str, dict], prefix: str) -> list[dict]:
    """Exchanges whose id starts with `prefix` (ids are case-insensitive)."""
    prefix = prefix.upper()
    return [x for id, x in merged.items() if id.upper().startswith(prefix)]


def read_body(root: Path, ref: object) -> bytes | None:
    """The stored body a record refers to, or None (no body, a bad ref, a missing file).

    A body is named by the SHA-256 of what was stored, so what is read is checked
    against its name: UnsafeFile when it is not that (altered since), or is not a
    regular file (a symlink, a FIFO), or is larger than MAX_BODY_BYTES.
    """
    path = LogsDir(root).body_file(ref)
    if path is None:
        return None
    try:
        data = read_regular(path, MAX_BODY_BYTES)
    except FileNotFoundError:
        return None
    if hashlib.sha256(data).hexdigest() != path.name:
        raise UnsafeFile(f"{path}: its content does not match its name (altered since stored)")
    return data
