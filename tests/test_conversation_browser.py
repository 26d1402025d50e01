"""The conversation views in a real browser (Debian's chromium, driven by Playwright)
against a live proxy and a live `agentlog ui`: model API calls made with curl through
the proxy to the fake, which answers real-shaped SSE streams.

Every test fails on a dialog, an uncaught page error or a CSP violation.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser import have_browser
from tests.conftest import UPSTREAM, proxy_args
from tests.harness import RunningProxy, curl, start_proxy
from tests.model_calls import call_model, sample, sse
from tests.ui_harness import RunningUI, last_seq, start_ui

pytestmark = [
    pytest.mark.timeout(180),
    pytest.mark.skipif(not have_browser(), reason="needs playwright and /usr/bin/chromium"),
]

if have_browser():
    from playwright.sync_api import Page, expect

ROWS = "#rows tr.row"
PROMPT = "What's the weather in Lisbon? (asked by the browser test)"
SYSTEM = "You are a weather bot. " + "Answer in one sentence. " * 20
LONG_RESULT = "line of a long tool result\n" * 300
MARKUP = "<img src=x onerror=alert('xss-reply')><b>bold</b><script>alert('xss')</script>"


def request(prompt: str = PROMPT, history: list | None = None) -> dict:
    return {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 1024,
        "stream": True,
        "system": [{"type": "text", "text": SYSTEM}],
        "tools": [{"name": "get_weather", "input_schema": {"type": "object"}}],
        "messages": [*(history or []), {"role": "user", "content": prompt}],
    }


HISTORY = [
    {"role": "user", "content": "Earlier question"},
    {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "toolu_0", "name": "get_weather", "input": {"q": "x"}}
        ],
    },
    {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_0", "content": LONG_RESULT}],
    },
]


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory, upstream, upstream_ca
) -> Iterator[tuple[RunningProxy, RunningUI, dict]]:
    logs = tmp_path_factory.mktemp("conversation-ui") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        markup = sse(
            {"type": "message_start", "message": {"model": "m", "usage": {"input_tokens": 7}}},
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text"}},
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": MARKUP},
            },
            {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 3}},
            {"type": "message_stop"},
        )
        ids = {
            "tool": call_model(
                proxy,
                "anthropic.messages",
                request(history=HISTORY),
                sample("anthropic_tool_use.sse"),
                query="?beta=true",
            ),
            "text": call_model(
                proxy, "anthropic.messages", request("thanks"), sample("anthropic_text.sse")
            ),
            "chat": call_model(
                proxy,
                "openai.chat",
                json.loads(sample("openai_chat_request.json")),
                sample("openai_chat_tool_calls.sse"),
            ),
            "markup": call_model(proxy, "anthropic.messages", request(MARKUP), markup),
        }
        assert curl(proxy, f"https://{UPSTREAM}/hello").returncode == 0
        proxy.wait_for(lambda events: sum(e["event"] == "response" for e in events) == 5)
        ui = start_ui(logs)
        try:
            ui.wait_indexed(last_seq(logs))
            yield proxy, ui, ids
        finally:
            ui.stop()
    finally:
        proxy.stop()


def open_row(page: Page, ui: RunningUI, id: str):
    page.goto(ui.url)
    page.locator(f"{ROWS}[data-id='{id}']").click()
    view = page.locator("tr.detail-row .conversation")
    expect(view).to_be_visible()
    return view


def test_a_model_call_opens_as_its_conversation(stack, page: Page) -> None:
    _, ui, ids = stack
    view = open_row(page, ui, ids["tool"])
    summary = view.locator(".c-summary")
    expect(summary).to_contain_text("claude-sonnet-4-5-20250929")
    expect(summary).to_contain_text("anthropic.messages")
    expect(view.locator(".c-message.role-user").last).to_contain_text(PROMPT)

    reply = view.locator(".c-reply")
    expect(reply).to_contain_text("Okay, let's check the weather for Lisbon, PT:")
    call = reply.locator(".c-tool-call")
    expect(call.locator(".c-tool-name")).to_have_text("get_weather")
    expect(call.locator("pre.c-json")).to_contain_text('"location": "Lisbon, PT"')
    expect(call.locator("pre.c-json")).to_contain_text('"unit": "celsius"')
    foot = reply.locator(".c-reply-foot")
    expect(foot).to_contain_text("stop reason: tool_use")
    for text in ("input 472", "output 89", "cache write 0", "cache read 0"):
        expect(foot).to_contain_text(text)

    # Large payloads start collapsed: the system prompt, earlier messages, tool results.
    system = view.locator("details.fold", has_text="system prompt")
    expect(system).not_to_have_attribute("open", "")
    expect(view.get_by_text(SYSTEM.strip())).to_have_count(0)  # not even built yet
    system.locator("> summary").click()
    expect(system.locator("pre.c-text")).to_have_text(SYSTEM)
    earlier = view.locator("details.fold", has_text="earlier message")
    expect(earlier).not_to_have_attribute("open", "")
    earlier.locator("> summary").click()
    expect(earlier).to_contain_text("Earlier question")
    result = view.locator(".c-tool-result details.fold")
    expect(result).not_to_have_attribute("open", "")
    result.locator("> summary").click()
    expect(result.locator("pre.c-text")).to_contain_text("line of a long tool result")

    # The headers and bodies are a tab away.
    page.locator("tr.detail-row .view-switch button", has_text="headers and bodies").click()
    expect(page.locator("tr.detail-row .panes")).to_be_visible()
    expect(view).to_be_hidden()
    page.locator("tr.detail-row .view-switch button", has_text="conversation").click()
    expect(view).to_be_visible()


def test_openai_calls_open_as_conversations_too(stack, page: Page) -> None:
    _, ui, ids = stack
    view = open_row(page, ui, ids["chat"])
    calls = view.locator(".c-reply .c-tool-call")
    expect(calls).to_have_count(2)
    expect(calls.nth(0)).to_contain_text('"location": "Paris, France"')
    expect(calls.nth(1).locator(".c-tool-name")).to_have_text("get_time")
    expect(view.locator(".c-reply-foot")).to_contain_text("cache read 64")


def test_other_requests_show_headers_and_bodies_only(stack, page: Page) -> None:
    proxy, ui, _ = stack
    page.goto(ui.url)
    page.locator(ROWS, has_text="/hello").click()
    expect(page.locator("tr.detail-row .panes")).to_be_visible()
    expect(page.locator("tr.detail-row .view-switch")).to_have_count(0)


def test_markup_in_a_reply_renders_as_text(stack, page: Page) -> None:
    _, ui, ids = stack
    view = open_row(page, ui, ids["markup"])
    expect(view.locator(".c-reply pre.c-text")).to_have_text(MARKUP)
    expect(view.locator(".c-message.role-user").last).to_contain_text(MARKUP)
    assert view.locator("img, script, b").count() == 0
    page.wait_for_timeout(300)  # an onerror handler would have run by now (the fixture checks)


def test_the_session_view_shows_turns_and_totals(stack, page: Page) -> None:
    proxy, ui, ids = stack
    session = proxy.events("request")[0]["session"]
    page.goto(ui.url)
    page.click("nav.tabs button.tab[data-view='conversations']")
    root = page.locator("#view-conversations")
    expect(root.locator("h2")).to_contain_text(session)
    totals = root.locator("dl.c-totals")
    for label, value in (
        ("model calls", "4"),
        ("input tokens", f"{472 + 25 + 82 + 7:,}"),
        ("output tokens", f"{89 + 15 + 46 + 3}"),
        ("cache write", "120"),
        ("cache read", f"{2048 + 64:,}"),
        ("tool calls", "3"),
    ):
        expect(totals.locator(f"dt:text-is('{label}') + dd")).to_have_text(value)
    expect(root.locator(".c-session-facts")).to_contain_text("get_weather 2")
    expect(root.locator(".c-session-facts")).to_contain_text("get_time 1")
    turns = root.locator("table.c-turns tbody tr.row")
    expect(turns).to_have_count(4)
    expect(turns.nth(0)).to_contain_text("What's the weather in Lisbon?")
    expect(turns.nth(0)).to_contain_text("get_weather")
    expect(turns.nth(3)).to_contain_text(MARKUP)  # as text

    turns.nth(1).locator("a.action").click()  # open: the exchange in the request list
    expect(page.locator("#view-requests")).to_be_visible()
    expect(page.locator(f"{ROWS}[data-id='{ids['text']}']")).to_have_attribute(
        "aria-expanded", "true"
    )
    expect(page.locator("tr.detail-row .c-reply")).to_contain_text("Hello! How can I help")

    # From an expanded call to its session's view, by link.
    page.locator("tr.detail-row a", has_text="this session's conversation").click()
    expect(page.locator("#view-conversations table.c-turns tbody tr.row")).to_have_count(4)
