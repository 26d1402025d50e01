"""The fake Anthropic API answers as documented: stream shape and timing, turns, failures.

The script is run as a container would run it: a bare python3 without
site-packages (-I -S), so an import outside the stdlib fails here first.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.fakes.anthropic import USAGE, message_of, plan_turn, prompt_of, sse_events
from tests.fakes.certs import issue_leaf, make_ca

SCRIPT = Path(__file__).parent / "fakes" / "anthropic.py"
NAME = "api.anthropic.com"
WRITE_TOOL = {
    "name": "Write",
    "input_schema": {
        "type": "object",
        "properties": {"file_path": {"type": "string"}, "content": {"type": "string"}},
        "required": ["file_path", "content"],
    },
}


@dataclass
class Served:
    proc: subprocess.Popen
    port: int
    tls: ssl.SSLContext
    log: Path

    def connect(self) -> http.client.HTTPSConnection:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.tls)
        connection.connect()
        return connection


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("fake-anthropic")
    ca = make_ca("fake anthropic test CA")
    cert, key = issue_leaf(ca, [NAME]).write(directory, "leaf")
    log = directory / "requests.jsonl"
    proc = subprocess.Popen(
        ["/usr/bin/python3", "-I", "-S", str(SCRIPT), "--listen", "127.0.0.1:0"]
        + ["--cert", str(cert), "--key", str(key), "--log", str(log)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert ready["tls"] is True and ready["listening"] == f"127.0.0.1:{ready['port']}"
        tls = ssl.create_default_context(cafile=str(ca.write(directory)))
        tls.check_hostname = False  # dialled by address; the name is checked below
        yield Served(proc, ready["port"], tls, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def post(
    connection: http.client.HTTPConnection,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
    path: str = "/v1/messages?beta=true",
) -> tuple[http.client.HTTPResponse, bytes, float, float]:
    """(response, body, time to first body byte, total), over `connection`."""
    started = time.monotonic()
    connection.request(
        "POST", path, json.dumps(body), {"content-type": "application/json", **(headers or {})}
    )
    response = connection.getresponse()
    first = response.read1(1)
    ttfb = time.monotonic() - started
    rest = response.read()
    return response, first + rest, ttfb, time.monotonic() - started


def user(*content: Any) -> dict[str, Any]:
    return {"role": "user", "content": list(content)}


def text(value: str) -> dict[str, str]:
    return {"type": "text", "text": value}


def parse_sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in raw.decode().split("\n\n"):
        if block.strip():
            fields = dict(line.split(": ", 1) for line in block.split("\n"))
            events.append((fields["event"], json.loads(fields["data"])))
    return events


def reassemble(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The message the events describe (the client's side of the stream)."""
    (name, start), *rest = events
    assert name == "message_start"
    message = dict(start["message"])
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    for name, data in rest:
        assert data["type"] == name
        if name == "content_block_start":
            assert data["index"] == len(blocks)
            blocks.append(dict(data["content_block"]))
        elif name == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta":
                blocks[data["index"]]["text"] += delta["text"]
            else:
                partial[data["index"]] = partial.get(data["index"], "") + delta["partial_json"]
        elif name == "content_block_stop" and data["index"] in partial:
            blocks[data["index"]]["input"] = json.loads(partial[data["index"]])
        elif name == "message_delta":
            message.update(data["delta"])
            message["usage"] = {**message["usage"], **data["usage"]}
    return {**message, "content": blocks}


def test_a_streamed_text_turn_has_the_api_shape_and_arrives_over_time(served):
    connection = served.connect()
    assert NAME in str(connection.sock.getpeercert()["subjectAltName"])  # type: ignore[union-attr]
    prompt = [text("<system-reminder>\nnot the prompt\n</system-reminder>\n"), text("Hi there")]
    body = {"model": "claude-x", "stream": True, "max_tokens": 99, "messages": [user(*prompt)]}
    response, raw, ttfb, total = post(connection, body)
    assert response.status == 200
    assert response.getheader("content-type").startswith("text/event-stream")
    events = parse_sse(raw)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert names.count("content_block_delta") >= 2
    assert ttfb * 2 < total and total > 0.2  # 40 ms between events
    message = reassemble(events)
    assert message["content"] == [{"type": "text", "text": 'Fake reply: you said "Hi there"'}]
    assert message["stop_reason"] == "end_turn" and message["model"] == "claude-x"
    assert events[0][1]["message"]["usage"]["output_tokens"] == 1
    assert {k: message["usage"][k] for k in USAGE["text"]} == USAGE["text"]
    # keep-alive: the next request goes over the same connection
    sock = connection.sock
    response, raw, _, _ = post(connection, {**body, "stream": False})
    assert connection.sock is sock and response.status == 200
    assert json.loads(raw)["content"] == message["content"]


def test_a_write_request_gets_a_tool_use_then_a_final_turn(served):
    connection = served.connect()
    system = [text("...\n - Primary working directory: /work/here\n")]
    ask = user(text('write the file notes.txt containing "a b c"'))
    body = {"model": "m", "stream": True, "system": system, "tools": [WRITE_TOOL]}
    response, raw, _, _ = post(connection, {**body, "messages": [ask]})
    events = parse_sse(raw)
    input_deltas = [d for n, d in events if n == "content_block_delta" and d["index"] == 1]
    assert len(input_deltas) > 1  # the tool's input arrives in pieces
    message = reassemble(events)
    [said, call] = message["content"]
    assert said["type"] == "text"
    assert call["type"] == "tool_use" and call["name"] == "Write"
    assert call["input"] == {"file_path": "/work/here/notes.txt", "content": "a b c"}
    assert message["stop_reason"] == "tool_use"
    assert message["usage"]["output_tokens"] == USAGE["tool_use"]["output_tokens"]
    result = {"type": "tool_result", "tool_use_id": call["id"], "content": "File created"}
    turns = [ask, {"role": "assistant", "content": message["content"]}, user(result)]
    response, raw, _, _ = post(connection, {**body, "messages": turns})
    final = reassemble(parse_sse(raw))
    assert final["content"] == [{"type": "text", "text": 'Done: the tool answered "File created".'}]
    assert final["usage"]["cache_read_input_tokens"] == USAGE["final"]["cache_read_input_tokens"]


def test_failures_come_first_then_the_answer(served):
    connection = served.connect()
    rate_limited = {"model": "m", "messages": [user(text("hello [fail:429]"))]}
    response, raw, _, _ = post(connection, rate_limited)
    assert response.status == 429 and response.getheader("retry-after") == "1"
    assert json.loads(raw)["error"]["type"] == "rate_limit_error"
    assert post(connection, rate_limited)[0].status == 200
    twice = {"model": "m", "messages": [user(text("by header"))]}
    statuses = [post(connection, twice, {"x-fake-fail": "529x2"})[0].status for _ in range(3)]
    assert statuses == [529, 529, 200]
    response, raw, _, _ = post(served.connect(), twice, {"x-fake-fail": "529"})
    assert response.status == 200  # this prompt has had its 529s


def test_everything_else_gets_a_small_answer(served):
    connection = served.connect()
    response, raw, _, _ = post(connection, {"messages": []}, path="/v1/messages/count_tokens")
    assert (response.status, json.loads(raw)) == (200, {"input_tokens": 100})
    connection.request("HEAD", "/api/hello")
    response = connection.getresponse()
    assert (response.status, response.read()) == (200, b"")
    connection.request("GET", "/api/claude_code/settings")
    response = connection.getresponse()
    assert response.status == 404 and json.loads(response.read())["type"] == "error"
    # a chunked request body is read whole
    connection.putrequest("POST", "/v1/messages")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    payload = json.dumps({"model": "m", "messages": [user(text("chunked"))]}).encode()
    for piece in (payload[:10], payload[10:]):
        connection.send(b"%x\r\n%s\r\n" % (len(piece), piece))
    connection.send(b"0\r\n\r\n")
    response = connection.getresponse()
    assert "chunked" in json.loads(response.read())["content"][0]["text"]
    response, raw, _, _ = post(connection, {"messages": "not a list"})
    assert response.status == 200  # no user message: a reply all the same


def test_garbage_gets_400_and_the_server_carries_on(served):
    with socket.create_connection(("127.0.0.1", served.port)) as raw:
        raw.sendall(b"\x16\x03\x01 not a TLS hello at all\r\n\r\n")  # fails the handshake
    connection = served.connect()
    connection.request("POST", "/v1/messages", b"{not json", {"content-type": "application/json"})
    response = connection.getresponse()
    assert response.status == 400
    assert json.loads(response.read())["error"]["type"] == "invalid_request_error"
    assert post(served.connect(), {"model": "m", "messages": []})[0].status == 200


def test_the_log_file_has_every_request(served):
    connection = served.connect()
    post(connection, {"model": "m", "messages": [user(text("logged"))]})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        logged = [json.loads(line) for line in served.log.read_text().splitlines()]
        if any(e.get("body") and "logged" in json.dumps(e["body"]) for e in logged):
            break
        time.sleep(0.05)
    entry = logged[-1]
    assert entry["method"] == "POST" and entry["status"] == 200 and entry["turn"] == "text"
    assert entry["usage"] == USAGE["text"]


prompts = st.text(min_size=0, max_size=300).filter(lambda s: "write the file" not in s)


@given(prompts)
def test_a_text_reply_quotes_the_prompt(prompt):
    body = {"messages": [user(text(prompt))]}
    kind, blocks, stop = plan_turn(body)
    assert (kind, stop) == ("text", "end_turn")
    shown = prompt_of(body)
    assert shown[:200] in blocks[0]["text"]


@given(st.text(max_size=200), st.text(max_size=200))
def test_the_stream_reassembles_to_the_message(said, written):
    blocks = [
        {"type": "text", "text": said},
        {"type": "tool_use", "id": "t1", "name": "Write", "input": {"content": written}},
    ]
    message = message_of("msg_1", "m", blocks, "tool_use", USAGE["tool_use"])
    events = [(name, json.loads(json.dumps(data))) for name, data in sse_events(message)]
    assert reassemble(events) == message
