"""EventSink stamps id, session and time; the records builders stay pure."""

from __future__ import annotations

from agentlog import records
from agentlog.journal.sink import EventSink


class Journal:
    def __init__(self) -> None:
        self.appended: list[tuple[dict, dict | None]] = []

    def append(self, event: dict, bodies=None, waiter=None) -> None:
        self.appended.append((event, bodies))


def test_emit_stamps_session_time_and_a_new_id_unless_given():
    journal = Journal()
    sink = EventSink(journal, "S1")  # type: ignore[arg-type]
    sink.emit(records.journal_event, action="start")
    sink.emit(records.journal_event, id="FLOW", ts=0.0, action="stop")
    (first, _), (second, _) = journal.appended
    assert first["session"] == second["session"] == "S1"
    assert len(first["id"]) == 26 and first["id"] != "FLOW"
    assert first["timestamp"] > "2020"
    assert second["id"] == "FLOW" and second["timestamp"] == "1970-01-01T00:00:00.000000Z"


def test_build_returns_what_the_builder_returns_and_queues_nothing():
    journal = Journal()
    sink = EventSink(journal, "S1")  # type: ignore[arg-type]
    fields = dict(domain="a.test", port=443, rule=None, reason="r")
    built = sink.build(records.blocked_event, id="X", ts=1.5, **fields)
    assert built == records.blocked_event(id="X", session="S1", ts=1.5, **fields)
    assert journal.appended == []
