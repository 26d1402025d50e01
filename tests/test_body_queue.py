"""The journal writer with bodies: a slow body delays only its own exchange, order
within an exchange holds, secrets carry from request to response, memory is bounded."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from agentlog.journal import chain
from agentlog.journal.bodies import Body
from agentlog.journal.body_queue import BodyQueue, Entry
from agentlog.journal.writer import JournalWriter
from agentlog.logsdir import LogsDir
from agentlog.redact import Redactor
from tests.fakes.app import bomb

pytestmark = pytest.mark.timeout(60)
KEY = b"k" * 32
MiB = 1 << 20


def journal(logs: LogsDir) -> list[dict]:
    return [json.loads(line) for line in logs.journal.read_bytes().splitlines()]


@pytest.fixture
def logs(tmp_path) -> LogsDir:
    logs = LogsDir(tmp_path / "logs")
    logs.prepare()
    return logs


def test_a_slow_body_delays_only_its_own_exchange(logs):
    # 16 MiB of decoded output to redact: about a second of work in a body worker.
    writer = JournalWriter(logs, KEY, Redactor(), body_cap=16 * MiB)
    writer.start()
    slow = Body(bomb("br", 300), "text/plain", "br")

    async def scenario() -> None:
        request_a = writer.write_ahead({"event": "request", "id": "A"}, {"request_body": slow})
        a = asyncio.ensure_future(request_a)
        await asyncio.sleep(0)
        writer.append({"event": "response", "id": "A"})  # must still follow A's request
        await writer.write_ahead({"event": "request", "id": "B"})
        assert not a.done()  # B went first: it did not wait behind A's body
        await a

    asyncio.run(scenario())
    writer.close()
    events = [(e["event"], e["id"]) for e in journal(logs)]
    assert events == [("request", "B"), ("request", "A"), ("response", "A")]
    request_a = journal(logs)[1]
    assert (logs.root / request_a["request_body"]).stat().st_size == 16 * MiB
    assert request_a["request_body_truncated"] is True
    assert chain.verify(logs.journal.read_bytes().splitlines(keepends=True), KEY).ok


def test_secrets_in_a_request_body_scrub_its_response_body(logs):
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()
    secret = "Zq9plainsecretvalue123"
    shared: set[str] = set()  # the exchange's set, as the Recorder passes it
    big = json.dumps({"api_key": secret, "pad": "x" * 40_000}).encode()  # a worker's job
    small = f"you sent {secret}".encode()  # stored inline by the writer thread
    writer.append(
        {"event": "request", "id": "X", "request_body_truncated": False},
        {"request_body": Body(big, "application/json", "", shared)},
    )
    writer.append(
        {"event": "response", "id": "X", "response_body_truncated": False},
        {"response_body": Body(small, "text/plain", "", shared)},
    )
    writer.close()
    request, response = journal(logs)
    assert (request["event"], response["event"]) == ("request", "response")
    assert (logs.root / response["response_body"]).read_bytes() == b"you sent [REDACTED]"
    assert secret.encode() not in (logs.root / request["request_body"]).read_bytes()


def test_close_writes_every_event_with_its_body(logs):
    writer = JournalWriter(logs, KEY, Redactor())
    writer.start()
    for i in range(20):
        body = Body(bomb("gzip", 5), "text/plain", "gzip")
        writer.append({"event": "response", "id": f"r{i}"}, {"response_body": body})
    writer.close()
    events = journal(logs)
    assert len(events) == 20
    assert all((logs.root / e["response_body"]).stat().st_size == MiB for e in events)


def brotli_bomb() -> Body:
    return Body(bomb("br", 50), "", "br")


def test_over_the_budget_a_body_is_refused_or_waited_for(logs):
    ready: list[Entry] = []
    woken = threading.Event()
    queue = BodyQueue(logs.root, Redactor(), MiB, ready.extend, woken.set, 10_000)
    queue.start()
    first = Entry({"event": "response", "id": "1"}, {"response_body": brotli_bomb()})
    second = Entry({"event": "response", "id": "2"}, {"response_body": brotli_bomb()})
    assert queue.put(first) is False  # to a worker
    assert queue.put(second) is True  # over the budget: written at once, without its body
    assert second.event["response_body"] is None
    assert second.event["response_body_error"].startswith("not stored:")

    async def write_ahead_waits() -> None:
        bodies = {"request_body": brotli_bomb()}
        waiting = asyncio.ensure_future(queue.room(bodies))
        await asyncio.sleep(0.01)
        assert not waiting.done() or first in ready  # waits until the first is stored
        await asyncio.wait_for(waiting, 30)
        assert first in ready

    asyncio.run(write_ahead_waits())
    queue.drain(30)
    queue.close()
    assert first.event["response_body"].startswith("bodies/")


def test_close_gives_up_on_bodies_that_take_too_long(logs):
    ready: list[Entry] = []
    queue = BodyQueue(logs.root, Redactor(), 32 * MiB, ready.extend, lambda: None)
    queue.start()
    slow = Entry({"event": "request", "id": "A"}, {"request_body": Body(bomb("br", 300), "", "br")})
    after = Entry({"event": "response", "id": "A"}, {"response_body": Body(b"small", "", "")})
    assert queue.put(slow) is False and queue.put(after) is False
    queue.drain(0.01)  # 32 MiB to decode and redact: far longer than that
    assert ready == [slow, after]  # in order, written without their bodies
    for entry, name in ((slow, "request_body"), (after, "response_body")):
        assert entry.event[name] is None
        assert entry.event[f"{name}_error"] == "not stored: proxy stopped"
    queue.close()  # the worker finishes; its late answer changes nothing
    assert "request_body_truncated" not in slow.event
