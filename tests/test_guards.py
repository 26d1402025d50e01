"""The guards' bookkeeping on mitmproxy's test connections: counting windows, the Tally's
coalescing, and ConnectionGuard's caps and deadlines (the attacks themselves are in
test_floods.py)."""

from __future__ import annotations

import asyncio

from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.test import tflow

from agentlog.config import Limits
from agentlog.journal.sink import EventSink
from agentlog.proxy.addons.connection_guard import ConnectionGuard
from agentlog.proxy.addons.stream_guard import Window
from agentlog.proxy.addons.tally import Tally


class Journal:
    """A JournalWriter stand-in that keeps what is appended."""

    def __init__(self) -> None:
        self.written: list[dict] = []

    def append(self, event: dict, bodies=None, waiter=None) -> None:
        self.written.append(event)


def client(host: str = "10.0.0.2", port: int = 40000):
    conn = tflow.tclient_conn()
    conn.peername = (host, port)
    return conn


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=200))
def test_a_window_counts_only_what_fell_within_a_second_of_its_start(times):
    window, seen = Window(), []
    for now in sorted(times):
        seen.append(now)
        count = window.add(now)
        assert now - window.start < 1.0
        assert count == sum(1 for t in seen if t >= window.start)


def test_the_tally_writes_one_event_per_client_and_action_however_many_were_cut():
    journal = Journal()

    async def flood() -> None:
        tally = Tally(EventSink(journal, "s"), every=0.05)  # type: ignore[arg-type]
        attackers = [client(port=40000 + i) for i in range(1000)]
        for c in attackers:
            tally.add(c, "header_timeout", 10.0)
        tally.add(client("10.0.0.3"), "refused", 256)
        for _ in range(50):
            tally.add(attackers[0], "streams_reset", None)
        assert journal.written == []  # nothing yet: counted, written within `every`
        await asyncio.sleep(0.1)
        tally.add(attackers[1], "header_timeout", 10.0)  # the next window
        tally.done()

    asyncio.run(flood())
    summary = [(e["client"], e["action"], e["count"], e["connections"]) for e in journal.written]
    assert summary == [
        ("10.0.0.2", "header_timeout", 1000, 1000),
        ("10.0.0.3", "refused", 1, 1),
        ("10.0.0.2", "streams_reset", 50, 1),
        ("10.0.0.2", "header_timeout", 1, 1),
    ]
    assert journal.written[0]["limit"] == 10.0 and journal.written[2]["limit"] is None


def test_connection_guard_caps_each_address_and_cuts_what_stalls():
    journal, closed = Journal(), []

    async def run() -> None:
        tally = Tally(EventSink(journal, "s"), every=0.01)  # type: ignore[arg-type]
        limits = Limits(
            header_timeout=0.05, idle_timeout=0.1, max_client_connections=2, max_resets=100
        )
        guard = ConnectionGuard(limits, tally, close=closed.append)
        a, b, c, other = client(port=1), client(port=2), client(port=3), client("10.0.0.9")
        for conn in (a, b, c, other):
            guard.client_connected(conn)
        assert (a.error, b.error, other.error) == (None, None, None)
        assert c.error and "2 connections" in c.error  # the third from one address
        guard.client_disconnected(c)
        busy = tflow.tflow()
        busy.client_conn = b
        guard.requestheaders(busy)  # b's headers are complete: an exchange under way
        await asyncio.sleep(0.08)
        assert closed == [a, other]  # neither sent a request in time; b is busy
        guard.response(busy)  # now b is idle
        await asyncio.sleep(0.05)
        assert closed == [a, other]
        await asyncio.sleep(0.1)
        assert closed == [a, other, b]
        for conn in (a, b, other):
            guard.client_disconnected(conn)
        again = client(port=4)
        guard.client_connected(again)  # the address's connections are counted gone
        assert again.error is None
        guard.client_disconnected(again)
        await asyncio.sleep(0.05)

    asyncio.run(run())
    counts = {(e["client"], e["action"]): e["count"] for e in journal.written}
    assert counts == {
        ("10.0.0.2", "refused"): 1,
        ("10.0.0.2", "header_timeout"): 1,
        ("10.0.0.9", "header_timeout"): 1,
        ("10.0.0.2", "idle_timeout"): 1,
    }
