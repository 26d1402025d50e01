"""The conversation endpoints of `agentlog ui` over what the real proxy recorded of
model API calls: one exchange's conversation, one session's turns and totals."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.conftest import UPSTREAM, proxy_args
from tests.harness import RunningProxy, curl, start_proxy
from tests.model_calls import call_model, sample
from tests.ui_harness import RunningUI, last_seq, start_ui

pytestmark = pytest.mark.timeout(180)
PROMPT = "Please check the weather in Lisbon (api test)"


def request(prompt: str = PROMPT) -> dict:
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 512,
        "stream": True,
        "system": "You are a weather bot.",
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [{"role": "user", "content": prompt}],
    }


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory, upstream, upstream_ca
) -> Iterator[tuple[RunningProxy, RunningUI, dict]]:
    logs = tmp_path_factory.mktemp("conversation-api") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        ids = {
            "tool": call_model(
                proxy, "anthropic.messages", request(), sample("anthropic_tool_use.sse")
            ),
            "chat": call_model(
                proxy,
                "openai.chat",
                json.loads(sample("openai_chat_request.json")),
                sample("openai_chat_text.sse"),
            ),
            "text": call_model(
                proxy, "anthropic.messages", request("thanks"), sample("anthropic_text.sse")
            ),
        }
        assert curl(proxy, f"https://{UPSTREAM}/hello").returncode == 0
        proxy.wait_for(lambda events: sum(e["event"] == "response" for e in events) == 4)
        ui = start_ui(logs)
        try:
            ui.wait_indexed(last_seq(logs))
            yield proxy, ui, ids
        finally:
            assert ui.stop() == 0
    finally:
        proxy.stop()


def test_one_exchange_as_a_conversation(stack):
    _, ui, ids = stack
    got = ui.get(f"/api/exchanges/{ids['tool']}/conversation")
    assert got.status_code == 200, got.text
    c = got.json()
    assert c["id"] == ids["tool"] and c["api"] == "anthropic.messages"
    assert c["request"]["model"] == "claude-sonnet-4-5-20250929"
    assert c["request"]["system"] == ["You are a weather bot."]
    assert c["request"]["tools"] == ["get_weather"]
    assert c["request"]["messages"][0]["blocks"][0]["text"] == PROMPT
    reply = c["reply"]
    assert reply["complete"] and reply["streamed"] and reply["stop_reason"] == "tool_use"
    text, call = reply["blocks"]
    assert text["text"] == "Okay, let's check the weather for Lisbon, PT:"
    assert call["name"] == "get_weather"
    assert call["input"] == {"location": "Lisbon, PT", "unit": "celsius"}
    assert reply["usage"] == {
        "input_tokens": 472,
        "output_tokens": 89,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert c["notes"] == []


def test_the_detail_names_the_api_of_a_model_call(stack):
    proxy, ui, ids = stack
    assert ui.get(f"/api/exchanges/{ids['chat']}").json()["conversation"] == "openai.chat"
    hello = proxy.exchange("/hello")[0]["id"]
    assert ui.get(f"/api/exchanges/{hello}").json()["conversation"] is None
    missing = ui.get(f"/api/exchanges/{hello}/conversation")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "not a model API call"}
    unknown = ui.get("/api/exchanges/" + "0" * 26 + "/conversation")
    assert unknown.status_code == 404 and unknown.json() == {"detail": "no such exchange"}


def test_a_session_as_turns_with_totals(stack):
    proxy, ui, ids = stack
    session = proxy.events("request")[0]["session"]
    got = ui.get(f"/api/sessions/{session}/conversation")
    assert got.status_code == 200, got.text
    s = got.json()
    assert s["session"] == session and s["exchanges"] == 4
    assert [t["id"] for t in s["turns"]] == [ids["tool"], ids["chat"], ids["text"]]
    assert s["totals"] == {
        "requests": 3,
        "input_tokens": 472 + 25,
        "output_tokens": 89 + 15,
        "cache_creation_input_tokens": 120,
        "cache_read_input_tokens": 2048,
        "tool_calls": 1,
        "errors": 0,
    }
    assert s["tools"] == [{"name": "get_weather", "calls": 1}]
    assert s["models"] == ["claude-opus-4-1-20250805", "gpt-4o-mini", "claude-sonnet-4-5-20250929"]
    first = s["turns"][0]
    assert first["prompt"] == PROMPT and first["status"] == 200
    assert first["tool_calls"] == [
        {
            "name": "get_weather",
            "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
            "input": '{"location":"Lisbon, PT","unit":"celsius"}',
        }
    ]
    assert s["turns"][1]["reply"] == "Hello there, ça va?"
    again = ui.get(f"/api/sessions/{session}/conversation").json()  # from the cache: the same
    assert again == s
    assert ui.get("/api/sessions/no-such-session/conversation").status_code == 404


def test_the_endpoints_are_in_the_schema_and_need_the_token(stack):
    _, ui, ids = stack
    schema = ui.get("/api/openapi.json").json()
    for path in ("/api/exchanges/{id}/conversation", "/api/sessions/{id}/conversation"):
        assert "200" in schema["paths"][path]["get"]["responses"]
    with ui.client(auth=False) as anonymous:
        assert anonymous.get(f"/api/exchanges/{ids['tool']}/conversation").status_code == 401
