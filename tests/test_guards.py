"""The guards' bookkeeping on mitmproxy's test connections: counting windows, the Tally's
coalescing, and ConnectionGuard's caps and deadlines (the attacks themselves are in
test_floods.py)."""

from __future__ import annotations

import asyncio

import h2.config
import h2.connection
import h2.errors
import h2.events
from hypothesis import given
from hypothesis import strategies as st
from mitmproxy.test import tflow

from agentlog.config import Limits
from agentlog.journal.sink import EventSink
from agentlog.proxy.addons.connection_guard import ConnectionGuard
from agentlog.proxy.addons.stream_guard import DoomedStreamFilter, Window
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
            header_timeout=0.05,
            idle_timeout=0.1,
            max_client_connections=2,
            max_resets=100,
            max_header_size=1024,
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


def h2_client_and_filter(allowed: int) -> tuple[h2.connection.H2Connection, DoomedStreamFilter]:
    client_side = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    client_side.initiate_connection()
    doomed: list[int] = []
    server_side = DoomedStreamFilter(
        h2.config.H2Configuration(client_side=False, header_encoding=False),
        doomed.append,
        lambda: allowed,
    )
    server_side.initiate_connection()
    server_side.receive_data(client_side.data_to_send())
    client_side.receive_data(server_side.data_to_send())
    server_side.doomed_counts = doomed  # type: ignore[attr-defined]
    return client_side, server_side


def request(client_side: h2.connection.H2Connection, end_stream: bool = True) -> int:
    stream_id = client_side.get_next_available_stream_id()
    headers = [(":method", "GET"), (":scheme", "https"), (":authority", "a.test"), (":path", "/")]
    client_side.send_headers(stream_id, headers, end_stream=end_stream)
    return stream_id


def test_streams_opened_and_reset_in_one_read_never_reach_mitmproxy():
    client_side, server_side = h2_client_and_filter(allowed=10_000)
    kept = request(client_side)
    for _ in range(300):
        client_side.reset_stream(request(client_side), h2.errors.ErrorCodes.CANCEL)
    posted = request(client_side, end_stream=False)
    client_side.send_data(posted, b"x" * 5000)
    client_side.reset_stream(posted, h2.errors.ErrorCodes.CANCEL)  # with data: reset at once too
    events = server_side.receive_data(client_side.data_to_send())
    assert {getattr(e, "stream_id", 0) for e in events} <= {0, kept}
    assert any(isinstance(e, h2.events.RequestReceived) for e in events)
    assert server_side.doomed_counts == [301]  # type: ignore[attr-defined]


def test_a_read_past_the_allowed_resets_is_not_parsed_further():
    client_side, server_side = h2_client_and_filter(allowed=50)
    for _ in range(2000):
        client_side.reset_stream(request(client_side), h2.errors.ErrorCodes.CANCEL)
    server_side.receive_data(client_side.data_to_send())
    (doomed,) = server_side.doomed_counts  # type: ignore[attr-defined]
    assert 50 < doomed < 100  # stopped within a chunk of the limit, not at 2,000
