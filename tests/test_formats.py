"""What the read side shows, from exchanges built in memory (no proxy needed)."""

import base64
import hashlib
from pathlib import Path

from agentlog.formats.exchange import with_bodies
from agentlog.formats.har import har
from agentlog.formats.text import event_line


def store(root: Path, data: bytes) -> str:
    """A body stored as the proxy stores it: named by its SHA-256."""
    name = hashlib.sha256(data).hexdigest()
    ref = f"bodies/{name[:2]}/{name}"
    (root / ref).parent.mkdir(parents=True, exist_ok=True)
    (root / ref).write_bytes(data)
    return ref


def exchange(response_body: str | None = None) -> dict:
    return {
        "event": "request",
        "id": "01X",
        "timestamp": "2026-01-01T00:00:00Z",
        "method": "POST",
        "scheme": "https",
        "domain": "api.test",
        "port": 443,
        "path": "/v1?q=a%20b&empty=",
        "headers": {"content-type": "text/plain"},
        "request_bytes": 2,
        "request_body": None,
        "response": {
            "status": 200,
            "headers": {"content-type": "application/octet-stream"},
            "response_bytes": 3,
            "response_body": response_body,
            "ttfb_ms": 5.0,
            "duration_ms": 7.5,
        },
    }


def test_event_lines_escape_agent_controlled_text():
    line = event_line({"event": "request", "method": "GET", "path": "/\x1b[2J\x9b31m"})
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in line)
    assert "\\x1b[2J\\x9b31m" in line
    assert "None" in event_line({"id": "no kind"})  # a line without "event" still prints


def test_a_connection_event_line_says_what_was_cut_off_and_how_many():
    cut = {"event": "connection", "action": "header_timeout", "client": "10.0.0.2", "count": 300}
    assert event_line({**cut, "limit": 10}).endswith("header_timeout 10.0.0.2: 300 (limit 10)")


def test_har_inlines_stored_bodies(tmp_path):
    ref = store(tmp_path, b"\xff\x00\x01")
    (entry,) = har(tmp_path, [exchange(ref)])["log"]["entries"]
    assert entry["request"]["url"] == "https://api.test/v1?q=a%20b&empty="
    assert entry["request"]["queryString"] == [
        {"name": "q", "value": "a b"},
        {"name": "empty", "value": ""},
    ]
    content = entry["response"]["content"]
    assert content["encoding"] == "base64" and base64.b64decode(content["text"]) == b"\xff\0\1"
    assert entry["timings"] == {"send": 0, "wait": 5.0, "receive": 2.5}


def test_with_bodies_adds_text_and_leaves_the_exchange_alone(tmp_path):
    original = exchange(store(tmp_path, b"ok \xff"))
    shown = with_bodies(tmp_path, original)
    assert shown["request_body_text"] is None
    assert shown["response"]["response_body_text"] == "ok \\xff"
    assert "response_body_text" not in original["response"]
