"""The conversation core (agentlog.conversation): real-shaped requests and replies of
the Anthropic Messages, OpenAI Chat Completions and OpenAI Responses APIs, and the
stream reassembly's properties (split anywhere, cut anywhere, garbage).

The samples in tests/llm_samples/ follow the event shapes of Anthropic's "Streaming
Messages" page (platform.claude.com/docs/en/build-with-claude/streaming: message_start,
content_block_* with text/thinking/signature/input_json deltas, message_delta with
cumulative usage, message_stop, error) and OpenAI's API reference (chat.completion.chunk
with tool_calls by index and the include_usage chunk before [DONE]; the Responses
API's response.* semantic events ending in response.completed).
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.conversation import Block, Reply, Usage, api_of, read_conversation
from agentlog.conversation.partial_json import parse_prefix
from agentlog.conversation.session import summarize, turn_of
from agentlog.conversation.sse import SseEvent, parse_all

SAMPLES = Path(__file__).resolve().parent / "llm_samples"
STREAMS = {
    "anthropic_text.sse": "anthropic.messages",
    "anthropic_tool_use.sse": "anthropic.messages",
    "anthropic_thinking.sse": "anthropic.messages",
    "anthropic_overloaded.sse": "anthropic.messages",
    "openai_chat_text.sse": "openai.chat",
    "openai_chat_tool_calls.sse": "openai.chat",
    "openai_responses_text.sse": "openai.responses",
    "openai_responses_function_call.sse": "openai.responses",
}
REQUESTS = {
    "anthropic.messages": "anthropic_request.json",
    "openai.chat": "openai_chat_request.json",
    "openai.responses": "openai_responses_request.json",
}


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def reply_of(api, body: bytes, content_type: str = "text/event-stream") -> Reply:
    conversation = read_conversation(api, None, body, response_type=content_type, status=200)
    assert conversation is not None and conversation.reply is not None
    return conversation.reply


def streamed(name: str) -> Reply:
    return reply_of(STREAMS[name], sample(name))


# -- detection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "api"),
    [
        ("POST", "/v1/messages", "anthropic.messages"),
        ("POST", "/v1/messages?beta=true", "anthropic.messages"),
        ("POST", "/anthropic/v1/messages/", "anthropic.messages"),
        ("POST", "/v1/chat/completions", "openai.chat"),
        ("POST", "/openai/deployments/gpt4/chat/completions?api-version=1", "openai.chat"),
        ("POST", "/v1/responses", "openai.responses"),
        ("POST", "/backend-api/codex/responses", "openai.responses"),  # Codex, ChatGPT login
        ("POST", "/v1/messages/count_tokens", None),
        ("POST", "/v1/messages/batches", None),
        ("GET", "/v1/messages", None),
        ("POST", "/v1/threads/t1/messages", None),
        ("POST", None, None),
    ],
)
def test_the_api_is_named_by_method_and_path(method, path, api):
    assert api_of(method, path) == api


def test_a_body_of_another_shape_is_no_conversation():
    for api in REQUESTS:
        assert read_conversation(api, b'{"hello": "world"}', None) is None
        assert read_conversation(api, b"not json at all", None) is None
        assert read_conversation(api, b"", None) is None


# -- requests ----------------------------------------------------------------------


def test_anthropic_request_reads_model_system_tools_and_every_kind_of_message():
    conversation = read_conversation(
        "anthropic.messages", sample("anthropic_request.json"), None, status=None
    )
    assert conversation is not None and conversation.reply is None
    request = conversation.request
    assert request.model == "claude-sonnet-4-5-20250929"
    assert request.stream and request.max_tokens == 32000
    assert request.system == (
        "You are Claude Code, Anthropic's official CLI for Claude.",
        "Primary working directory: /home/user/project",
    )
    assert request.tools == ("Bash", "Write", "web_search")
    first, second, third = request.messages
    assert [b.type for b in first.blocks] == ["text", "text", "image"]
    assert first.blocks[1].text == "What is in this screenshot? Then run the tests."
    assert first.blocks[2].text.startswith("[image: image/png, ")  # a placeholder, no bytes
    assert "iVBOR" not in first.blocks[2].text
    assert [b.type for b in second.blocks] == ["thinking", "text", "tool_use"]
    call = second.blocks[2]
    assert (call.name, call.id, call.input) == (
        "Bash",
        "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
        {"command": "pytest -q"},
    )
    ok, failed, said = third.blocks
    assert (ok.type, ok.id, ok.text, ok.is_error) == (
        "tool_result",
        "toolu_01D7FLrfh4GYq7yT1ULFeyMV",
        "3 passed in 0.12s",
        False,
    )
    assert failed.is_error and failed.text == "command not found"
    assert said.text == "Thanks. Summarise."


def test_a_system_prompt_may_be_one_string():
    body = {"model": "m", "system": "be brief", "messages": [{"role": "user", "content": "hi"}]}
    conversation = read_conversation("anthropic.messages", json.dumps(body).encode(), None)
    assert conversation is not None
    assert conversation.request.system == ("be brief",)
    assert conversation.request.messages[0].blocks == (Block("text", text="hi"),)


def test_openai_chat_request_lifts_the_system_message_and_reads_tool_calls_and_results():
    conversation = read_conversation("openai.chat", sample("openai_chat_request.json"), None)
    assert conversation is not None
    request = conversation.request
    assert request.system == ("You are aider, an expert software developer.",)
    assert request.tools == ("get_weather", "get_time")
    roles = [m.role for m in request.messages]
    assert roles == ["user", "assistant", "tool", "user"]
    assert request.messages[0].blocks[1].type == "image"
    call = request.messages[1].blocks[0]
    assert (call.type, call.name, call.input) == ("tool_use", "get_weather", {"location": "Paris"})
    result = request.messages[2].blocks[0]
    assert (result.type, result.id, result.text) == ("tool_result", "call_1", "14 degrees, cloudy")


def test_openai_responses_request_reads_instructions_and_input_items():
    conversation = read_conversation(
        "openai.responses", sample("openai_responses_request.json"), None
    )
    assert conversation is not None
    request = conversation.request
    assert request.model == "gpt-5-codex"
    assert request.system[0].startswith("You are Codex")
    assert request.system[1] == "<environment_context>cwd: /repo</environment_context>"
    assert request.tools == ("shell", "web_search")
    user, call, output, again = request.messages
    assert user.blocks[0].text == "list the files" and user.blocks[1].type == "image"
    assert call.blocks[0].input == {"command": ["pwd"]}
    assert (output.role, output.blocks[0].text) == ("tool", "/repo")
    assert again.blocks[0].text == "now with details"
    plain = read_conversation("openai.responses", b'{"model": "m", "input": "hello"}', None)
    assert plain is not None and plain.request.messages[0].blocks[0].text == "hello"


def test_a_request_cut_at_the_body_cap_is_read_as_far_as_it_goes():
    whole = sample("anthropic_request.json")
    cut = whole[: whole.index(b"Thanks.") + 3]
    conversation = read_conversation("anthropic.messages", cut, None, request_cut=True)
    assert conversation is not None
    assert not conversation.request.complete
    assert conversation.request.model == "claude-sonnet-4-5-20250929"
    assert conversation.request.messages[-1].blocks[-1].text == "Tha"
    assert any("body cap" in note for note in conversation.notes)


# -- replies -----------------------------------------------------------------------


def test_anthropic_text_stream():
    reply = streamed("anthropic_text.sse")
    assert reply.complete and reply.streamed
    assert reply.blocks == (
        Block("text", text="Hello! How can I help with the résumé 😀 today? Café ☕ 日本"),
    )
    assert reply.stop_reason == "end_turn"
    assert reply.model == "claude-sonnet-4-5-20250929"
    # message_delta's output_tokens is the total so far, not an increment.
    assert reply.usage == Usage(25, 15, 120, 2048)


def test_anthropic_tool_use_input_is_rebuilt_from_its_fragments():
    reply = streamed("anthropic_tool_use.sse")
    text, call = reply.blocks
    assert text.text == "Okay, let's check the weather for Lisbon, PT:"
    assert (call.type, call.name, call.id) == (
        "tool_use",
        "get_weather",
        "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
    )
    assert call.input == {"location": "Lisbon, PT", "unit": "celsius"}
    assert not call.partial
    assert reply.stop_reason == "tool_use"
    assert reply.usage == Usage(472, 89, 0, 0)


def test_anthropic_thinking_and_redacted_thinking():
    reply = streamed("anthropic_thinking.sse")
    thinking, redacted, text = reply.blocks
    assert thinking.type == "thinking"
    assert thinking.text.endswith("147 = 7 × 21 + 0") and "signature" not in thinking.text
    assert redacted == Block("redacted_thinking")
    assert text.text == "The greatest common divisor of 1071 and 462 is **21**."
    assert reply.usage == Usage(12, 240, 0, 0)


def test_anthropic_stream_that_failed_says_so():
    reply = streamed("anthropic_overloaded.sse")
    assert reply.error == "overloaded_error: Overloaded"
    assert not reply.complete
    assert reply.blocks == (Block("text", text="Let me"),)


def test_usage_counts_in_message_delta_replace_those_before():
    events = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}},
        {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5}},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "max_tokens"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_delta", "delta": {}, "usage": {"input_tokens": 12, "output_tokens": 9}},
        {"type": "message_stop"},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    reply = reply_of("anthropic.messages", body)
    assert reply.usage == Usage(input_tokens=12, output_tokens=9)
    assert reply.stop_reason == "max_tokens"


def test_anthropic_json_replies():
    reply = reply_of("anthropic.messages", sample("anthropic_reply.json"), "application/json")
    assert reply.complete and not reply.streamed
    assert reply.blocks[1].input == {"command": "pytest -q", "description": "Run the test suite"}
    assert reply.usage == Usage(2095, 503, 2051, 0)
    conversation = read_conversation(
        "anthropic.messages", None, sample("anthropic_error.json"), status=429
    )
    assert conversation is not None and conversation.reply is not None
    assert conversation.reply.error == (
        "rate_limit_error: Number of request tokens has exceeded your per-minute rate limit"
    )


def test_openai_chat_stream_with_tool_calls_and_the_usage_chunk():
    reply = streamed("openai_chat_tool_calls.sse")
    weather, time = reply.blocks
    assert (weather.name, weather.id, weather.input) == (
        "get_weather",
        "call_DdmO9pD3xa9XTPNJ32zg2hcA",
        {"location": "Paris, France"},
    )
    assert (time.name, time.input) == ("get_time", {"timezone": "Europe/Paris"})
    assert reply.stop_reason == "tool_calls"
    assert reply.usage == Usage(input_tokens=82, output_tokens=46, cache_read_input_tokens=64)
    assert reply.complete


def test_openai_chat_text_stream_and_json_reply():
    reply = streamed("openai_chat_text.sse")
    assert reply.blocks == (Block("text", text="Hello there, ça va?"),)
    assert reply.stop_reason == "stop" and reply.usage == Usage()
    reply = reply_of("openai.chat", sample("openai_chat_reply.json"), "application/json")
    assert reply.blocks[0].input == {"path": "README.md"}
    assert reply.usage == Usage(input_tokens=1117, output_tokens=46, cache_read_input_tokens=1024)


def test_openai_responses_streams_and_json_reply():
    reply = streamed("openai_responses_text.sse")
    assert reply.blocks == (Block("text", text="Hi there! Naïve question?"),)
    assert reply.stop_reason == "completed"
    assert reply.usage == Usage(input_tokens=37, output_tokens=11, cache_read_input_tokens=0)
    reply = streamed("openai_responses_function_call.sse")
    thinking, call = reply.blocks
    assert thinking.type == "thinking" and thinking.text.startswith("**Listing files**")
    assert (call.name, call.id) == ("shell", "call_pdtFzHzR1mF8yS2Qm5ba")
    assert call.input == {"command": ["bash", "-lc", "ls -la"], "workdir": "/repo"}
    assert reply.usage == Usage(input_tokens=4823, output_tokens=93, cache_read_input_tokens=4608)
    reply = reply_of("openai.responses", sample("openai_responses_reply.json"), "application/json")
    assert reply.stop_reason == "incomplete: max_output_tokens"
    assert reply.blocks[0].text == "The image depicts a scenic landscape with"


def test_a_non_2xx_answer_is_an_error_even_without_an_error_body():
    conversation = read_conversation(
        "anthropic.messages", None, b"<html>bad gateway</html>", status=502
    )
    assert conversation is not None and conversation.reply is not None
    assert conversation.reply.error == "HTTP 502"
    assert any("not a reply" in note for note in conversation.notes)


def test_deep_json_in_a_body_is_read_as_nothing_never_a_recursion_error():
    deep = "[" * 900 + "]" * 900
    call = '{"type": "tool_use", "name": "x", "input": ' + deep + "}"
    request = '{"model": "m", "messages": [{"role": "assistant", "content": [' + call + "]}]}"
    assert read_conversation("anthropic.messages", request.encode(), None) is None
    reply = '{"type": "message", "content": [' + call + "]}"
    conversation = read_conversation("anthropic.messages", None, reply.encode())
    assert conversation is not None
    json.dumps(asdict(conversation))
    start = {"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use"}}
    event = json.dumps(start).replace('"tool_use"}', '"tool_use", "input": ' + deep + "}")
    stream = f'data: {event}\n\ndata: {{"type": "message_stop"}}\n\n'.encode()
    conversation = read_conversation("anthropic.messages", None, stream)
    assert conversation is not None
    json.dumps(asdict(conversation))


def test_a_secret_split_across_stream_pieces_is_redacted_once_reassembled():
    """The stored body was redacted piece by piece; a key split over two
    input_json_delta fragments (or text deltas) was whole in none of them."""
    key = "sk-ant-api03-" + "x7Qm2" * 18 + "AA"
    fragments = ['{"path": ".env", "content": "ANTHROPIC_API_KEY=' + key[:20], key[20:] + '"}']
    events = [
        {"type": "message_start", "message": {"model": "m", "usage": {}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": key[:15]},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": key[15:]},
        },
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "t", "name": "Write", "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 1,
                "delta": {"type": "input_json_delta", "partial_json": f},
            }
            for f in fragments
        ),
        {"type": "message_stop"},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    reply = reply_of("anthropic.messages", body)
    assert key not in json.dumps([b.text for b in reply.blocks] + [reply.blocks[1].input])
    assert "[REDACTED]" in reply.blocks[0].text
    assert reply.blocks[1].input["path"] == ".env"
    assert "[REDACTED]" in reply.blocks[1].input["content"]


# -- the SSE parser ----------------------------------------------------------------


def test_sse_follows_the_spec():
    text = (
        "\ufeff: a comment\n"
        "event: one\ndata: first\ndata:second\n\n"
        "data\n\n"  # a field without a colon: empty data
        'id: 7\nretry: 100\ndata: {"a": 1}\n\n'
        "event: no-data\n\n"  # no data: nothing dispatched, the type forgotten
        "data: x\n\n"
        "data: left open\n"
    ).encode()
    events, open_ = parse_all([text])
    assert events == [
        SseEvent("one", "first\nsecond"),
        SseEvent("message", ""),
        SseEvent("message", '{"a": 1}', "7"),
        SseEvent("message", "x", "7"),
    ]
    assert open_  # the last event had no blank line: not dispatched


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r"])
def test_sse_line_ends(end):
    text = f"event: a{end}data: 1{end}{end}data: 2{end}{end}".encode()
    assert parse_all([text]) == ([SseEvent("a", "1"), SseEvent("message", "2")], False)


# -- properties --------------------------------------------------------------------

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def with_line_ends(body: bytes, end: bytes) -> bytes:
    return body.replace(b"\r\n", b"\n").replace(b"\n", end)


def split(body: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(body) + 1) for c in cuts})
    edges = [0, *points, len(body)]
    return [body[a:b] for a, b in zip(edges, edges[1:], strict=False)]


def stream_reply(api, chunks: list[bytes]) -> Reply | None:
    """What the stream's parts make: fed to the incremental parser piece by piece."""
    from agentlog.conversation.reader import _READERS, _redacted

    events, _ = parse_all(chunks)
    reply = _READERS[api].read_stream(events)
    return None if reply is None else _redacted(reply)


@FAST
@given(
    name=st.sampled_from(sorted(STREAMS)),
    cuts=st.lists(st.integers(min_value=0), max_size=40),
    end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_a_stream_split_anywhere_with_any_line_ends_reassembles_the_same(name, cuts, end):
    api = STREAMS[name]
    whole = streamed(name)
    body = with_line_ends(sample(name), end)
    assert stream_reply(api, split(body, cuts)) == whole
    assert reply_of(api, body) == whole


@FAST
@given(
    name=st.sampled_from(sorted(STREAMS)),
    cuts=st.lists(st.integers(min_value=0), max_size=60),
    end=st.sampled_from([b"\n", b"\r\n", b"\r"]),
)
def test_sse_events_are_the_same_however_the_bytes_arrive(name, cuts, end):
    body = with_line_ends(sample(name), end)
    whole = parse_all([sample(name)])
    assert whole[0] and not whole[1]
    assert parse_all(split(body, cuts)) == whole
    assert parse_all([bytes([b]) for b in body]) == whole


@FAST
@given(name=st.sampled_from(sorted(STREAMS)), data=st.data())
def test_a_stream_cut_anywhere_is_a_partial_reply_never_an_error(name, data):
    api = STREAMS[name]
    body = sample(name)
    whole = streamed(name)
    at = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    conversation = read_conversation(
        api, None, body[:at], response_cut=True, status=200, response_type="text/event-stream"
    )
    assert conversation is not None
    reply = conversation.reply
    assert reply is not None and not reply.complete
    assert any("cut" in note for note in conversation.notes)
    # What was read is the start of what the whole stream says.
    for part, full in zip(reply.blocks, whole.blocks, strict=False):
        if part.type in ("text", "thinking") and full.type == part.type:
            assert full.text.startswith(part.text)


@FAST
@given(
    api=st.sampled_from(["anthropic.messages", "openai.chat", "openai.responses"]),
    request=st.one_of(st.none(), st.binary(max_size=300)),
    response=st.one_of(st.none(), st.binary(max_size=300)),
    status=st.one_of(st.none(), st.integers(100, 599)),
)
def test_garbage_never_raises(api, request, response, status):
    read_conversation(api, request, response, status=status, response_type="text/event-stream")
    read_conversation(api, request, response, status=status, response_type="application/json")


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@FAST
@given(
    api=st.sampled_from(["anthropic.messages", "openai.chat", "openai.responses"]),
    request=JSON_VALUES,
    events=st.lists(JSON_VALUES, max_size=8),
)
def test_json_of_any_shape_never_raises(api, request, events):
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    read_conversation(api, json.dumps(request).encode(), body, response_type="text/event-stream")
    for event in events:
        read_conversation(api, json.dumps(request).encode(), json.dumps(event).encode())
    # Events of the right types with values of any shape.
    kinds = [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "message_delta",
        "response.output_item.added",
        "response.output_text.delta",
        "response.function_call_arguments.delta",
        "response.completed",
    ]
    typed = [
        {"type": kinds[i % len(kinds)], "index": 0, "output_index": 0, "x": e}
        for i, e in enumerate(events)
    ]
    typed += [
        {**t, k: e}
        for t in typed[:2]
        for k in ("message", "delta", "item", "response", "usage")
        for e in events[:2]
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in typed).encode()
    read_conversation(api, None, body, response_type="text/event-stream")


@settings(max_examples=200, deadline=None)
@given(value=JSON_VALUES, data=st.data())
def test_json_prefixes_read_without_error_and_whole_json_reads_as_json(value, data):
    for text in (json.dumps(value), json.dumps(value, ensure_ascii=False, indent=1)):
        assert parse_prefix(text) == (json.loads(text), True)
        at = data.draw(st.integers(min_value=0, max_value=len(text)))
        parse_prefix(text[:at])


@settings(max_examples=200, deadline=None)
@given(value=st.text(), data=st.data())
def test_a_cut_string_reads_as_the_start_of_the_string(value, data):
    text = json.dumps(value)
    at = data.draw(st.integers(min_value=1, max_value=len(text) - 1))
    read, whole = parse_prefix(text[:at])
    assert not whole and isinstance(read, str) and value.startswith(read)


@given(st.text(max_size=200))
def test_any_text_reads_without_error(text):
    parse_prefix(text)


def test_partial_json_examples():
    assert parse_prefix('{"a": [1, 2, {"b": "hel') == ({"a": [1, 2, {"b": "hel"}]}, False)
    assert parse_prefix('{"a": 1, "b"') == ({"a": 1}, False)
    assert parse_prefix('{"a": 12') == ({}, False)  # 12 may have been 123
    assert parse_prefix("[true, fa") == ([True], False)
    assert parse_prefix('"\\ud83d') == ("", False)  # half a surrogate pair
    assert parse_prefix('{"a": 1} trailing') == (None, False)
    # Deeper than anything real (and than what copies it again has stack for).
    assert parse_prefix("[" * 5000) == (None, False)
    assert parse_prefix("[" * 100 + "]" * 100)[1]
    assert parse_prefix("[" * 101 + "]" * 101) == (None, False)
    assert parse_prefix("[" * 101 + "]" * 100) == (None, False)
    assert parse_prefix("[" * 100 + "]" * 99)[0] is not None
    # Only what can be written as JSON again (the API answers JSON).
    assert parse_prefix("[NaN]") == (None, False)
    assert parse_prefix('{"a": 1e999}') == (None, False)
    assert parse_prefix('{"a": -Infinity') == (None, False)


# -- sessions ----------------------------------------------------------------------


def test_a_session_summary_adds_up_its_turns():
    asked = read_conversation("anthropic.messages", sample("anthropic_request.json"), None)
    assert asked is not None
    calls = [
        ("a", replace(asked, reply=streamed("anthropic_tool_use.sse"))),
        ("b", replace(asked, reply=streamed("anthropic_text.sse"))),
        ("c", replace(asked, reply=streamed("anthropic_overloaded.sse"))),
        ("d", replace(asked, reply=reply_of("anthropic.messages", sample("anthropic_reply.json")))),
    ]
    turns = [turn_of(id, f"2026-01-01T00:00:0{i}Z", 200, c) for i, (id, c) in enumerate(calls)]
    summary = summarize("S1", turns)
    assert [t.id for t in summary.turns] == ["a", "b", "c", "d"]
    totals = summary.totals
    assert totals.requests == 4
    assert totals.input_tokens == 472 + 25 + 30 + 2095
    assert totals.output_tokens == 89 + 15 + 1 + 503
    assert totals.cache_creation_input_tokens == 0 + 120 + 0 + 2051
    assert totals.cache_read_input_tokens == 2048
    assert totals.tool_calls == 2 and totals.errors == 1
    assert [(t.name, t.calls) for t in summary.tools] == [("Bash", 1), ("get_weather", 1)]
    assert summary.models == (
        "claude-opus-4-1-20250805",
        "claude-sonnet-4-5-20250929",
    )
    first = summary.turns[0]
    assert first.prompt == "Thanks. Summarise." and first.tool_results == 2
    assert first.tool_calls[0].input == '{"location":"Lisbon, PT","unit":"celsius"}'


def test_what_is_glued_to_a_mask_is_the_rest_of_the_secret():
    """The stored body masked a value to the end of its stream event; the next event
    starts with the rest of it."""
    events = [
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "KEY=[REDACTED]"},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "q7Xw9pL2== done"},
        },
        {"type": "message_stop"},
    ]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode()
    assert reply_of("anthropic.messages", body).blocks[0].text == "KEY=[REDACTED] done"


def test_a_turns_prompt_leaves_out_system_reminders():
    def prompt_of(*texts: str) -> str:
        content = [{"type": "text", "text": t} for t in texts]
        body = {"model": "m", "messages": [{"role": "user", "content": content}]}
        conversation = read_conversation("anthropic.messages", json.dumps(body).encode(), None)
        assert conversation is not None
        return turn_of("id", "t", None, conversation).prompt

    reminder = "<system-reminder>\nAs you answer, use this context.\n</system-reminder>"
    assert prompt_of(reminder, "write the file a.txt") == "write the file a.txt"
    assert prompt_of(reminder) == reminder
    assert prompt_of(f"{reminder} and this") == f"{reminder} and this"
