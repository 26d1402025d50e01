"""Recorder hooks on mitmproxy's test flows: each request event is written exactly once."""

from __future__ import annotations

import asyncio

from mitmproxy import flow as mflow
from mitmproxy.test import tflow

from agentlog.journal.sink import EventSink
from agentlog.journal.writer import JournalError
from agentlog.proxy.addons.recorder import Recorder
from agentlog.redact import Redactor


class Journal:
    """A JournalWriter stand-in: keeps what is written; write-ahead fails while `full`."""

    def __init__(self, full: bool) -> None:
        self.full = full
        self.written: list[dict] = []

    def append(self, event: dict, bodies=None, waiter=None) -> None:
        self.written.append(event)

    async def write_ahead(self, event: dict, bodies=None) -> int:
        if self.full:
            raise JournalError("journal write failed: No space left on device")
        self.append(event)
        return len(self.written)


def run_exchange_that_errors(journal: Journal) -> tuple[int | None, list[str]]:
    recorder = Recorder(EventSink(journal, "session"), Redactor(), body_cap=1024)  # type: ignore[arg-type]
    flow = tflow.tflow()
    assert recorder.requestheaders(flow) is None  # a small body: held, recorded at `request`
    asyncio.run(recorder.request(flow))
    status = flow.response.status_code if flow.response else None
    flow.error = mflow.Error("client disconnected")
    recorder.error(flow)
    return status, [e["event"] for e in journal.written]


def test_request_written_ahead_is_not_written_again_by_its_error():
    assert run_exchange_that_errors(Journal(full=False)) == (None, ["request", "error"])


def test_request_whose_write_ahead_failed_is_written_by_its_error():
    # Refused with a 503; if the exchange then fails, its request still gets its one event.
    assert run_exchange_that_errors(Journal(full=True)) == (503, ["request", "error"])
