"""GET /api/live: the index's changes as Server-Sent Events, in journal (seq) order.

Each poll reads the rows whose last change lies in a window of seqs the index
has committed, so a reconnect with Last-Event-ID loses nothing and a long
backlog goes out in slices.
"""

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.concurrency import run_in_threadpool

from agentlog.ui.index import Indexer
from agentlog.ui.query import Filters
from agentlog.ui.store import Store

POLL = 0.1  # seconds between looks at the indexer's position
WINDOW = 5000  # seqs read per query: a long backlog goes out in slices
PING = 15.0  # seconds of quiet before a keep-alive comment


def message(kind: str, seq: int | None, data: object) -> bytes:
    head = f"event: {kind}\n" + (f"id: {seq}\n" if seq is not None else "")
    return (head + f"data: {json.dumps(data, separators=(',', ':'))}\n\n").encode()


def _changes(store: Store, f: Filters, after: int, upto: int) -> list[tuple[int, bytes]]:
    rows = [
        (r["updated_seq"], message("exchange", r["updated_seq"], r))
        for r in store.changed(f, after, upto)
    ]
    events = [(seq, message("event", seq, e)) for seq, e in store.events_between(after, upto)]
    return sorted(rows + events, key=lambda pair: pair[0])


async def stream(
    store: Store,
    indexer: Indexer,
    f: Filters,
    last: int | None,
    disconnected: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    epoch = indexer.epoch
    if last is None or last > indexer.indexed_seq:  # none, or of a journal since replaced
        if last is not None:
            yield message("reset", None, {})
        last = indexer.indexed_seq
    quiet_since = time.monotonic()
    while not await disconnected():
        if indexer.epoch != epoch:
            epoch, last = indexer.epoch, indexer.indexed_seq
            yield message("reset", None, {})
        upto = min(indexer.indexed_seq, last + WINDOW)
        if upto > last:
            for _, data in await run_in_threadpool(_changes, store, f, last, upto):
                yield data
            last, quiet_since = upto, time.monotonic()
            continue
        if time.monotonic() - quiet_since >= PING:
            yield b": ping\n\n"
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL)
