"""Where an event waits, between `append` and sealing, until its bodies are stored.

An event names its bodies' files, so it can be sealed only once they are
written. Storing a body (decode, redact, hash, write) can take tens of
milliseconds, so it happens off the journal writer thread and the event
loop: small plain bodies (up to INLINE_MAX, no Content-Encoding) are cheap
enough for the writer to store as it seals them; all others go to the body
worker processes. Meanwhile the writer goes on sealing everything else, so
one slow body delays only its own exchange.

Order is kept where it matters: the events of one exchange (one `id`) reach
the writer in the order they were appended, and its bodies are stored one
after the other, so the secrets found in a request body also scrub the
response body. Events of other exchanges do not wait for them.

Memory and backlog are bounded: the bodies waiting for a worker may hold at
most BUDGET bytes, and each event counts for ENTRY_COST more, so that at most
256 wait: a bomb is small on the wire but costs a worker the cap's worth of
decoding and redacting. A write-ahead event over the budget waits for room
(backpressure on that request); any other event over it is written without
its body and says why (`<field>_error`).
"""

import asyncio
import collections
import contextlib
import functools
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentlog.journal.bodies import Body, Stored
from agentlog.journal.body_worker import BodyWorkers, Done, Job, run
from agentlog.journal.decoding import codings
from agentlog.redact import Redactor

INLINE_MAX = 16 * 1024  # redacting this much holds the GIL for about a millisecond
BUDGET = 32 * 1024 * 1024
ENTRY_COST = BUDGET // 256


@dataclass(eq=False)
class Entry:
    event: dict[str, Any]  # the writer fills in its body refs
    bodies: dict[str, Body]
    waiter: asyncio.Future | None = None  # set for write-ahead events
    inline: bool = False  # small and plain: the writer stores its bodies as it seals it
    held: int = 0  # charged to the budget until its bodies are stored


def is_cheap(bodies: dict[str, Body]) -> bool:
    return all(
        len(body.data) <= INLINE_MAX and not codings(body.content_encoding)
        for body in bodies.values()
    )


def apply(event: dict, outcomes: dict[str, Stored | str]) -> None:
    """Put what became of each body into its event."""
    for name, outcome in outcomes.items():
        if isinstance(outcome, str):
            event[name] = None
            event[f"{name}_error"] = outcome
        elif outcome.ref is None:
            event[name] = None
            event[f"{name}_undecodable"] = outcome.undecodable
        else:
            event[name] = outcome.ref
            event[f"{name}_truncated"] = outcome.truncated


class BodyQueue:
    def __init__(
        self,
        root: Path,
        redactor: Redactor,
        limit: int,
        ready: Callable[[list[Entry]], None],
        wake: Callable[[], None],
        budget: int = BUDGET,
    ) -> None:
        """`ready` takes entries whose bodies are stored (in order, under our lock);
        `wake` tells the writer that some of them are awaited."""
        self._root = root
        self._redactor = redactor
        self._limit = limit
        self._ready = ready
        self._wake = wake
        self._budget = budget
        self._workers = BodyWorkers(root, redactor)
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._lanes: dict[object, collections.deque[Entry]] = {}  # by exchange id
        self._held = 0
        self._room_waiters: list[asyncio.Future] = []
        self._stored: set[str] = set()  # body files the writer thread knows exist

    def start(self) -> None:
        self._workers.start()

    def put(self, entry: Entry) -> bool:
        """Queue `entry`; True if it went to `ready` at once (the caller wakes the writer)."""
        key = entry.event.get("id")
        if not entry.bodies and key not in self._lanes:
            # Most events. Only put() adds lanes, so none can appear for `key`
            # meanwhile (short of a concurrent put for the same exchange, whose
            # order was never defined): no lock needed.
            self._ready([entry])
            return True
        entry.inline = bool(entry.bodies) and is_cheap(entry.bodies)
        with self._lock:
            lane = self._lanes.get(key)
            if entry.bodies and not entry.inline:
                self._charge(entry)
            if lane is not None:
                lane.append(entry)
                return False
            if not entry.bodies:
                self._ready([entry])
                return True
            self._lanes[key] = collections.deque([entry])
            return self._start(entry)

    async def room(self, bodies: dict[str, Body]) -> None:
        """Wait until `bodies` fit the budget (write-ahead backpressure)."""
        if not bodies or is_cheap(bodies):
            return
        size = _cost(bodies)
        while True:
            with self._lock:
                if self._fits(size):
                    return
                waiter = asyncio.get_running_loop().create_future()
                self._room_waiters.append(waiter)
            await waiter

    def store_inline(self, entry: Entry) -> None:
        """The writer thread stores a cheap entry's bodies, as it seals it."""
        bodies = _in_storing_order(entry.bodies, entry.event)
        apply(entry.event, run(bodies, self._limit, self._root, self._redactor, self._stored))

    def advance(self, entry: Entry) -> None:
        """`entry`'s bodies are stored: the next events of its exchange may go on."""
        with self._lock:
            awaited = self._advance(entry)
        if awaited:
            self._wake()

    def drain(self, timeout: float) -> None:
        """Wait for every body under way; past `timeout`, write the rest without theirs."""
        with self._lock:
            if self._drained.wait_for(lambda: not self._lanes, timeout):
                return
            for head, *rest in self._lanes.values():
                # An inline head is with the writer already; the rest never started.
                given_up = rest if head.inline else [head, *rest]
                for entry in given_up:
                    apply(entry.event, dict.fromkeys(entry.bodies, "not stored: proxy stopped"))
                    entry.bodies, entry.inline = {}, False
                self._ready(given_up)
            self._lanes.clear()

    def close(self) -> None:
        self._workers.close()

    # -- under the lock ----------------------------------------------------

    def _start(self, entry: Entry) -> bool:
        """Store the bodies of the entry at the head of its lane; True if it is ready now."""
        if entry.inline:
            self._ready([entry])
            return True
        job = Job(_in_storing_order(entry.bodies, entry.event), self._limit)
        urgent = entry.waiter is not None
        plain = not any(codings(body.content_encoding) for body in entry.bodies.values())
        done = functools.partial(self._finished, entry)
        self._workers.submit(job, done, urgent, plain, entry.held)
        return False

    def _advance(self, entry: Entry) -> bool:
        """Pass `entry` and what follows it in its lane on; True if any is awaited."""
        lane = self._lanes.get(entry.event.get("id"))
        if lane is None or lane[0] is not entry:
            return False  # given up on by drain()
        lane.popleft()
        self._release(entry)
        out = [] if entry.inline else [entry]
        while lane and not lane[0].bodies:
            out.append(lane.popleft())
        self._ready(out)
        awaited = any(e.waiter is not None for e in out)
        if lane:
            awaited |= self._start(lane[0]) and lane[0].waiter is not None
        else:
            del self._lanes[entry.event.get("id")]
            if not self._lanes:
                self._drained.notify_all()
        return awaited

    def _charge(self, entry: Entry) -> None:
        size = _cost(entry.bodies)
        if entry.waiter is None and not self._fits(size):
            note = f"not stored: {self._held // 1024} KiB of bodies were waiting to be stored"
            apply(entry.event, dict.fromkeys(entry.bodies, note))
            entry.bodies = {}
            return
        entry.held = size
        self._held += size

    def _fits(self, size: int) -> bool:
        return self._held == 0 or self._held + size <= self._budget

    def _release(self, entry: Entry) -> None:
        self._held -= entry.held
        entry.held = 0
        if self._room_waiters and self._held < self._budget:
            waiters, self._room_waiters = self._room_waiters, []
            for waiter in waiters:
                with contextlib.suppress(RuntimeError):  # its loop has closed
                    waiter.get_loop().call_soon_threadsafe(_wake_up, waiter)

    # -- on a body worker thread ---------------------------------------------

    def _finished(self, entry: Entry, done: Done | str) -> None:
        with self._lock:
            lane = self._lanes.get(entry.event.get("id"))
            if lane is None or lane[0] is not entry:
                return  # drain() gave up on it and it is written already
            if isinstance(done, str):  # the worker failed: every body says so
                apply(entry.event, dict.fromkeys(entry.bodies, done))
            else:
                apply(entry.event, done.outcomes)
                for body in entry.bodies.values():
                    body.secrets.update(done.secrets)  # the exchange's set, for its next bodies
            awaited = self._advance(entry)
        if awaited:
            self._wake()


def _in_storing_order(bodies: dict[str, Body], event: dict) -> list[tuple[str, Body, bool]]:
    """Request body first (its secrets scrub the response); `complete` from the event."""
    names = sorted(bodies, key=lambda name: name != "request_body") if len(bodies) > 1 else bodies
    return [(name, bodies[name], not event.get(f"{name}_truncated", False)) for name in names]


def _cost(bodies: dict[str, Body]) -> int:
    return ENTRY_COST + sum(len(body.data) for body in bodies.values())


def _wake_up(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)
