"""`agentlog show ID --conversation` and `agentlog sessions` over what the real proxy
recorded of model API calls (curl -> proxy -> the fake, answering real-shaped replies)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import API, proxy_args
from tests.harness import RunningProxy, agentlog, closed, curl, start_proxy
from tests.model_calls import call_model, sample, sse

pytestmark = pytest.mark.timeout(180)

PROMPT = "What's the weather in Lisbon? (a question only this test asks)"


def anthropic_request(prompt: str = PROMPT, **extra) -> dict:
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": "You are a weather bot.\nBe brief."}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, upstream, upstream_ca) -> Iterator[tuple[RunningProxy, dict]]:
    """One session: tool use, then text, then a 429, then OpenAI chat and Responses."""
    logs = tmp_path_factory.mktemp("conversation") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        ids = {
            "tool": call_model(
                proxy,
                "anthropic.messages",
                anthropic_request(),
                sample("anthropic_tool_use.sse"),
                query="?beta=true",
            ),
            "text": call_model(
                proxy, "anthropic.messages", anthropic_request(), sample("anthropic_text.sse")
            ),
            "limited": call_model(
                proxy,
                "anthropic.messages",
                anthropic_request(),
                sample("anthropic_error.json"),
                status=429,
                content_type="application/json",
            ),
            "chat": call_model(
                proxy,
                "openai.chat",
                json.loads(sample("openai_chat_request.json")),
                sample("openai_chat_tool_calls.sse"),
            ),
            "responses": call_model(
                proxy,
                "openai.responses",
                json.loads(sample("openai_responses_request.json")),
                sample("openai_responses_function_call.sse"),
            ),
        }
        yield proxy, ids
    finally:
        proxy.stop()


def show(proxy: RunningProxy, id: str) -> str:
    result = agentlog("show", id, "--conversation", "--logs", proxy.logs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_show_prints_the_call_as_a_conversation(recorded):
    proxy, ids = recorded
    out = show(proxy, ids["tool"])
    assert "/v1/messages?beta=true" in out.splitlines()[0]
    assert "api anthropic.messages  model claude-sonnet-4-5-20250929  streamed" in out
    assert "tools offered (1): get_weather" in out
    assert "-- system\n    You are a weather bot.\n    Be brief." in out
    assert f"-- user\n    {PROMPT}" in out
    assert "== reply (complete, claude-opus-4-1-20250805)" in out
    assert "Okay, let's check the weather for Lisbon, PT:" in out
    assert "[tool call] get_weather toolu_01T1x1fJ34qAmk2tNTrN7Up6" in out
    assert '"location": "Lisbon, PT"' in out and '"unit": "celsius"' in out
    assert "stop reason: tool_use" in out
    assert "usage: input 472, output 89, cache write 0, cache read 0" in out


def test_show_says_what_failed(recorded):
    proxy, ids = recorded
    out = show(proxy, ids["limited"])
    assert "error: rate_limit_error: Number of request tokens has exceeded" in out


def test_openai_calls_show_too(recorded):
    proxy, ids = recorded
    out = show(proxy, ids["chat"])
    assert "api openai.chat" in out and "-- system\n    You are aider" in out
    assert "[tool call] get_weather call_DdmO9pD3xa9XTPNJ32zg2hcA" in out
    assert '"location": "Paris, France"' in out
    assert "usage: input 82, output 46, cache read 64" in out
    out = show(proxy, ids["responses"])
    assert "[tool call] shell call_pdtFzHzR1mF8yS2Qm5ba" in out and '"ls -la"' in out
    assert "usage: input 4,823, output 93, cache read 4,608" in out


def test_show_refuses_an_exchange_that_is_no_model_call(tmp_path, upstream, upstream_ca):
    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]))
    try:
        assert curl(proxy, f"https://{API}/v1/models").returncode == 0
        proxy.wait_for(closed("response"))
        id = proxy.events("request")[0]["id"]
        result = agentlog("show", id, "--conversation", "--logs", proxy.logs)
        assert result.returncode == 2
        assert "is not a model API call" in result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
        listed = agentlog("sessions", "--logs", proxy.logs)
        assert listed.returncode == 0, listed.stderr
        assert listed.stdout.splitlines()[1].split()[2:5] == ["1", "0", "0"]
    finally:
        proxy.stop()


def test_sessions_lists_totals_and_one_session_its_turns(recorded):
    proxy, ids = recorded
    session = proxy.events("request")[0]["session"]
    listed = agentlog("sessions", "--logs", proxy.logs)
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith(session))
    # 5 exchanges, 5 calls; input 472+25+0+82+4823, output 89+15+46+93.
    assert line.split()[2:6] == ["5", "5", "5,402", "243"]

    one = agentlog("sessions", session, "--json", "--logs", proxy.logs)
    assert one.returncode == 0, one.stderr
    summary = json.loads(one.stdout)
    assert [t["id"] for t in summary["turns"]] == [
        ids[k] for k in ("tool", "text", "limited", "chat", "responses")
    ]
    assert summary["totals"] == {
        "requests": 5,
        "input_tokens": 472 + 25 + 82 + 4823,
        "output_tokens": 89 + 15 + 46 + 93,
        "cache_creation_input_tokens": 120,
        "cache_read_input_tokens": 2048 + 64 + 4608,
        "tool_calls": 1 + 2 + 1,
        "errors": 1,
    }
    assert summary["tools"] == [
        {"name": "get_weather", "calls": 2},
        {"name": "get_time", "calls": 1},
        {"name": "shell", "calls": 1},
    ]
    assert summary["models"][:2] == ["claude-opus-4-1-20250805", "claude-sonnet-4-5-20250929"]
    first = summary["turns"][0]
    assert first["prompt"] == PROMPT and first["status"] == 200
    assert first["tool_calls"][0]["name"] == "get_weather"
    assert summary["turns"][2]["status"] == 429

    text = agentlog("sessions", session[:12], "--logs", proxy.logs)
    assert text.returncode == 0, text.stderr
    assert f"prompt: {PROMPT}" in text.stdout
    assert "tools used: get_weather 2, get_time 1, shell 1" in text.stdout
    assert "tool call: get_weather" in text.stdout


def test_model_text_cannot_drive_the_terminal(tmp_path, upstream, upstream_ca):
    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]))
    try:
        hostile = "\x1b]0;owned\x07\x1b[2J<b>bold</b>\u202e"
        reply = sse(
            {"type": "message_start", "message": {"model": "m", "usage": {}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": hostile},
            },
            {"type": "message_stop"},
        )
        id = call_model(proxy, "anthropic.messages", anthropic_request(hostile), reply)
        out = show(proxy, id)
        assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
        assert "\\x1b]0;owned\\x07\\x1b[2J<b>bold</b>\\u202e" in out
    finally:
        proxy.stop()


def test_bodies_cut_or_not_stored_are_said_so(tmp_path, upstream, upstream_ca):
    proxy = start_proxy(
        tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]), "--body-cap", "1500"
    )
    try:
        cut = call_model(
            proxy,
            "anthropic.messages",
            anthropic_request("x" * 100),
            sample("anthropic_tool_use.sse"),
        )
        out = show(proxy, cut)
        assert "note: the response body was stored cut at the body cap" in out
        assert "== reply (incomplete" in out
        assert "Okay, let's check the weather" in out  # as far as it was stored

        long_prompt = anthropic_request("y" * 3000)
        cut_request = call_model(
            proxy, "anthropic.messages", long_prompt, sample("anthropic_text.sse")
        )
        out = show(proxy, cut_request)
        assert "note: the request body was stored cut at the body cap" in out
        assert "model claude-sonnet-4-5-20250929" in out

        undecodable = call_model(
            proxy,
            "anthropic.messages",
            anthropic_request(),
            "not gzip at all",
            headers=[["content-encoding", "gzip"]],
        )
        out = show(proxy, undecodable)
        assert "note: the response body was not stored: it could not be decoded" in out
    finally:
        proxy.stop()


def test_a_key_split_across_stream_events_stays_redacted(tmp_path, upstream, upstream_ca):
    """The stored body was redacted event by event: the key's tail, alone in its
    event, looked like nothing. Put back together it is a key again."""
    proxy = start_proxy(tmp_path / "logs", *proxy_args(upstream, upstream_ca[1]))
    key = "sk-ant-api03-" + "Tq7Xw" * 18 + "AA"
    pieces = ['{"file_path": ".env", "content": "ANTHROPIC_API_KEY=' + key[:24], key[24:] + '\\n"}']
    reply = sse(
        {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 1}}},
        {
            "type": "content_block_start",
            "index": 0,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {}},
        },
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "input_json_delta", "partial_json": p},
            }
            for p in pieces
        ),
        {"type": "message_stop"},
    )
    try:
        id = call_model(proxy, "anthropic.messages", anthropic_request("write .env"), reply)
        out = show(proxy, id)
        assert "[tool call] Write toolu_1" in out and '"file_path": ".env"' in out
        assert key[24:34] not in out and key[:24] not in out
        assert "[REDACTED]" in out
    finally:
        proxy.stop()
