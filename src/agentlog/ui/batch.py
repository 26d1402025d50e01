"""Journal lines made into what one index transaction writes: exchange rows, search
documents, other events (the indexer's core; no SQL here)."""

import json
from collections import OrderedDict
from collections.abc import Callable, Iterator, MutableMapping

import orjson

from agentlog.journal.reader import CLOSING_EVENTS, OPENING_EVENTS, merge
from agentlog.ui.rows import clean, row_of, search_doc, searchable

BATCH_LINES = 5_000  # one transaction; larger ones cost memory and gain little
CACHE_EXCHANGES = 10_000  # the recent exchanges' lines, kept: a closing event finds its request
_OPENINGS = frozenset((*OPENING_EVENTS, "tls_failed"))  # request, tcp relay, tls_failed
_CLOSINGS = frozenset(CLOSING_EVENTS)
_INT64 = 1 << 63  # what SQLite's INTEGER holds


def parse(line: bytes) -> object:
    """A journal line's JSON: orjson's, or where it refuses what json accepts (a lone
    surrogate, NaN, 1e999), json's, so no line json can read is left out (orjson
    reads an integer past 64 bits as a float). ValueError if neither reads it."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return json.loads(line)


def event_of(line: bytes) -> dict | None:
    """A journal line as an event with a kind and a seq SQLite can hold, or None."""
    try:
        event = parse(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(event, dict) or not isinstance(event.get("event"), str):
        return None
    seq = event.get("seq")
    if type(seq) is int and -_INT64 <= seq < _INT64:
        return event
    return None


def with_clean_id(event: dict) -> dict:
    """The event with its id as the index keeps it (`rows.clean`: SQLite refuses a
    lone surrogate), so its closing events find it whichever way it is read."""
    id = event.get("id")
    if isinstance(id, str) and not id.isascii():
        event["id"] = clean(id)
    return event


def merged(data: bytes) -> dict:
    """The exchange an index row's `data` (its journal lines) makes."""
    exchanges: dict[str, dict] = {}
    result: dict = {}
    for line in data.split(b"\n"):
        result = merge(exchanges, with_clean_id(parse(line))) or result  # type: ignore[arg-type]
    return result


class Exchanges(MutableMapping[str, dict]):
    """id -> merged exchange for `merge`, and beside each the journal lines it was
    merged from (what the index stores). Only the exchanges the batch being built
    touched are kept as dicts; after its commit (`settle`) the most recent ones are
    kept as their lines, merged again if a later event comes for them (few are:
    many small objects kept long are what makes Python's collector slow), and the
    older ones are loaded (`load`: an indexed row's data, or None)."""

    def __init__(self, load: Callable[[str], bytes | None]) -> None:
        self.load = load
        self.live: dict[str, dict] = {}
        self.lines: dict[str, list[bytes]] = {}
        self.recent = OrderedDict[str, bytes]()

    def __getitem__(self, id: str) -> dict:
        exchange = self.live.get(id)
        if exchange is not None:
            return exchange
        data = self.recent.get(id)
        if data is None:
            data = self.load(id)
            if data is None:
                raise KeyError(id)
        self.live[id] = exchange = merged(data)
        self.lines[id] = data.split(b"\n")  # the very bytes: a row is the same either way
        return exchange

    def get(self, id: str, default: dict | None = None) -> dict | None:  # type: ignore[override]
        """As Mapping.get, with the common case (in this batch) first: merge asks."""
        exchange = self.live.get(id)
        if exchange is not None:
            return exchange
        try:
            return self[id]
        except KeyError:
            return default

    def __setitem__(self, id: str, exchange: dict) -> None:
        self.live[id] = exchange
        self.lines[id] = []

    def __delitem__(self, id: str) -> None:
        del self.live[id]
        del self.lines[id]

    def __iter__(self) -> Iterator[str]:
        return iter(self.live)

    def __len__(self) -> int:
        return len(self.live)

    def data(self, id: str) -> bytes:
        """The lines an exchange was merged from, as a row's `data`."""
        return b"\n".join(self.lines[id])

    def settle(self, data: dict[str, bytes]) -> None:
        """The batch is committed: its exchanges (id -> data) are kept as lines."""
        recent = self.recent
        for id, lines in data.items():
            recent[id] = lines
            recent.move_to_end(id)
        while len(recent) > CACHE_EXCHANGES:
            recent.popitem(last=False)
        self.live.clear()
        self.lines.clear()


class BodyTexts:
    """ref -> a stored body's search text, the recent ones remembered: a body is
    named by its hash, so the same ref is the same text (and is read once)."""

    def __init__(self, read: Callable[[object], str], budget: int = 8 << 20) -> None:
        self.read, self.budget = read, budget
        self.texts = OrderedDict[object, str]()
        self.size = 0

    def __call__(self, ref: object) -> str:
        if ref is None:
            return ""
        text = self.texts.get(ref)
        if text is None:
            text = self.read(ref)
            self.texts[ref] = text
            self.size += len(text)
            while self.size > self.budget:
                self.size -= len(self.texts.popitem(last=False)[1])
        return text


class Batch:
    """What one transaction writes: changed exchanges, due documents, other events."""

    def __init__(self, exchanges: Exchanges, body_text: Callable[[object], str]) -> None:
        self.exchanges, self.body_text = exchanges, body_text
        self.changed: dict[str, tuple[dict, int]] = {}  # id -> (exchange, updated_seq)
        # (rowid, path, headers, bodies): made when due, from the exchange as it is then
        # (a later event with its id must not change it: nor does it in a later batch)
        self.documents: list[tuple[int, str, str, str]] = []
        self.events: list[tuple[int, str, str, str, bytes]] = []  # seq, kind, ts, session, line
        self.lines = 0
        self.last_line = b""
        self.end = 0
        self.seq: int | None = None

    def add(self, data: bytes, end: int) -> None:
        """One journal line (newline included) that ends at byte `end`."""
        self.lines += 1
        self.last_line, self.end = data, end
        event = event_of(data)
        if event is None:
            return
        seq, kind = event["seq"], event["event"]
        self.seq = seq
        opening = kind in _OPENINGS
        if not opening and kind not in _CLOSINGS:
            self.events.append(
                (
                    seq,
                    kind,
                    clean(str(event.get("timestamp", ""))),
                    clean(str(event.get("session", ""))),
                    data.rstrip(b"\n"),
                )
            )
            return
        id = with_clean_id(event).get("id")
        if not isinstance(id, str):
            return
        before = None if opening else self.exchanges.get(id)
        was_searchable = before is not None and searchable(before)
        exchange = merge(self.exchanges, event)
        if exchange is None:
            return
        self.exchanges.lines[id].append(data.rstrip(b"\n"))
        self.changed[id] = (exchange, seq)
        if not was_searchable and searchable(exchange):
            self.documents.append((exchange["seq"], *search_doc(exchange, self.body_text)))

    def rows(self) -> list[tuple]:
        """The changed exchanges' rows: ROW_FIELDS' values, then the lines (data)."""
        data = self.exchanges.data
        return [
            (*row_of(exchange, updated_seq).values(), data(id))
            for id, (exchange, updated_seq) in self.changed.items()
        ]
