"""formats.conversation: every way a model call's body can be missing from the logs
becomes a note, never an exception (the exchanges are as journal.reader.merge makes them)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from agentlog.formats.conversation import exchange_conversation
from agentlog.logsdir import LogsDir

SAMPLES = Path(__file__).resolve().parent / "llm_samples"


def store(root: Path, data: bytes) -> str:
    ref = LogsDir.body_ref(hashlib.sha256(data).hexdigest())
    (root / ref).parent.mkdir(parents=True, exist_ok=True)
    (root / ref).write_bytes(data)
    return ref


def call(root: Path, request: dict | None = None, response: dict | None = None, **closing) -> dict:
    exchange = {
        "event": "request",
        "id": "06H22E2D15HG4G51BMAXDA9D6R",
        "method": "POST",
        "path": "/v1/messages?beta=true",
        "request_bytes": 10,
        "request_body": store(root, (SAMPLES / "anthropic_request.json").read_bytes()),
        "request_body_truncated": False,
        **(request or {}),
    }
    if response is not None:
        exchange["response"] = {
            "status": 200,
            "headers": {"content-type": "text/event-stream"},
            "response_body": store(root, (SAMPLES / "anthropic_text.sse").read_bytes()),
            "response_body_truncated": False,
            **response,
        }
    exchange.update(closing)
    return exchange


def notes(root: Path, exchange: dict) -> tuple[str, ...]:
    conversation = exchange_conversation(root, exchange)
    assert conversation is not None
    return conversation.notes


def test_a_whole_call_has_no_notes(tmp_path):
    conversation = exchange_conversation(tmp_path, call(tmp_path, response={}))
    assert conversation is not None and conversation.notes == ()
    assert conversation.reply is not None and conversation.reply.complete


def test_bodies_not_stored_say_why(tmp_path):
    undecodable = {"response_body": None, "response_body_undecodable": "corrupt gzip stream"}
    assert notes(tmp_path, call(tmp_path, response=undecodable)) == (
        "the response body was not stored: it could not be decoded (corrupt gzip stream);"
        " the capture holds its bytes",
    )
    failed = {"request_body": None, "request_body_error": "disk full"}
    assert notes(tmp_path, call(tmp_path, failed, response={})) == (
        "the request body was not stored: disk full",
    )
    empty = {"request_body": None, "request_bytes": 0}
    assert notes(tmp_path, call(tmp_path, empty, response={})) == ("the request had no body",)


def test_a_streamed_request_bodys_fate_comes_with_the_closing_event(tmp_path):
    streamed = {"request_body": None, "request_bytes": None}
    exchange = call(tmp_path, streamed, response={"request_body_undecodable": "unknown coding"})
    assert notes(tmp_path, exchange)[0].startswith(
        "the request body was not stored: it could not be decoded (unknown coding)"
    )


def test_missing_or_altered_files_and_no_response(tmp_path):
    exchange = call(tmp_path, response={})
    (tmp_path / exchange["response"]["response_body"]).unlink()
    assert notes(tmp_path, exchange) == ("the response body's file is missing",)
    exchange = call(tmp_path, response={})
    (tmp_path / exchange["request_body"]).write_bytes(b'{"model": "forged"}')
    said = notes(tmp_path, exchange)
    assert said[0].startswith("the request body cannot be read:") and "altered" in said[0]
    assert notes(tmp_path, call(tmp_path)) == ("no response yet",)
    assert notes(tmp_path, call(tmp_path, error={"error": "connection reset"})) == (
        "no response: connection reset",
    )
    assert notes(tmp_path, call(tmp_path, blocked={"reason": "not on the allowlist"})) == (
        "blocked: not on the allowlist",
    )


def test_other_requests_are_no_conversation(tmp_path):
    assert exchange_conversation(tmp_path, call(tmp_path, {"method": "GET"})) is None
    assert exchange_conversation(tmp_path, call(tmp_path, {"path": "/v1/models"})) is None
    other = {"request_body": store(tmp_path, b'{"hello": 1}')}
    assert exchange_conversation(tmp_path, call(tmp_path, other, response={})) is None
