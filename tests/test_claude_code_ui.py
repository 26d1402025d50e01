"""A real Claude Code run, read in the UI (issue 11): `agentlog ui` on the logs of
`agentlog run -- claude -p ...` (tests/claude_runs.py), in Debian's chromium.

The run is the Write scenario: a tool_use turn that writes hello.txt, then a final
text turn. What the page shows is checked against what the fake answered (its log
of turns, replies and usage numbers), not against numbers written here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.browser import have_browser
from tests.claude_runs import ANTHROPIC, WRITE, ClaudeRun, claude_run
from tests.netns import can_make_namespaces
from tests.sandbox_runs import events
from tests.ui_harness import RunningUI, last_seq, start_ui

pytestmark = [
    pytest.mark.timeout(600),  # the first run installs Claude Code from the npm registry
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft"),
    pytest.mark.skipif(not have_browser(), reason="needs playwright and /usr/bin/chromium"),
]

if have_browser():
    from playwright.sync_api import Locator, Page, expect

ROWS = "#rows tr.row"
MESSAGES = "/v1/messages?beta=true"


@pytest.fixture(scope="module")
def recorded() -> Iterator[tuple[ClaudeRun, RunningUI]]:
    with claude_run(WRITE) as run:
        assert run.result.returncode == 0, run.result.stdout + run.result.stderr
        ui = start_ui(run.logs)
        try:
            ui.wait_indexed(last_seq(run.logs))
            yield run, ui
        finally:
            ui.stop()


def answered_calls(run: ClaudeRun) -> list[tuple[str, dict]]:
    """(journal id, the fake's turn) for each /v1/messages call it answered 200, in order."""
    journal = events(run.logs)
    ok = {e["id"] for e in journal if e["event"] == "response" and e["status"] == 200}
    ids = [
        e["id"]
        for e in journal
        if e["event"] == "request"
        and e["domain"] == ANTHROPIC
        and e["path"] == MESSAGES
        and e["id"] in ok
    ]
    assert len(ids) == len(run.turns), (ids, run.turns)
    return list(zip(ids, run.turns, strict=True))


def call_of(run: ClaudeRun, kind: str) -> tuple[str, dict]:
    found = [(id, turn) for id, turn in answered_calls(run) if turn["turn"] == kind]
    assert len(found) == 1, (kind, [t["turn"] for t in run.turns])
    return found[0]


def open_conversation(page: Page, ui: RunningUI, id: str) -> Locator:
    page.goto(ui.url)
    page.locator(f"{ROWS}[data-id='{id}']").click()
    view = page.locator("tr.detail-row .conversation")
    expect(view).to_be_visible()
    return view


def expect_usage(foot: Locator, usage: dict[str, int]) -> None:
    for label, key in (
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("cache write", "cache_creation_input_tokens"),
        ("cache read", "cache_read_input_tokens"),
    ):
        expect(foot).to_contain_text(f"{label} {usage[key]:,}")


def test_the_tool_use_call_shows_the_prompt_the_write_call_and_its_usage(
    recorded, page: Page
) -> None:
    run, ui = recorded
    id, turn = call_of(run, "tool_use")
    view = open_conversation(page, ui, id)
    expect(view.locator(".c-summary")).to_contain_text("anthropic.messages")
    expect(view.locator(".c-message.role-user").last).to_contain_text(WRITE.prompt)

    (tool,) = [b for b in turn["reply"] if b["type"] == "tool_use"]
    call = view.locator(".c-reply .c-tool-call")
    expect(call).to_have_count(1)
    expect(call.locator(".c-tool-name")).to_have_text(tool["name"])
    arguments = call.locator("pre.c-json")
    for key, value in tool["input"].items():  # file path and content, as Claude Code got them
        expect(arguments).to_contain_text(f"{json.dumps(key)}: {json.dumps(value)}")
    assert "hello.txt" in json.dumps(tool["input"])
    foot = view.locator(".c-reply .c-reply-foot")
    expect(foot).to_contain_text("stop reason: tool_use")
    expect_usage(foot, turn["usage"])


def test_the_final_call_shows_the_fakes_reply_text(recorded, page: Page) -> None:
    run, ui = recorded
    id, turn = call_of(run, "final")
    view = open_conversation(page, ui, id)
    (text,) = [b["text"] for b in turn["reply"] if b["type"] == "text"]
    expect(view.locator(".c-reply")).to_contain_text(text)
    assert text.split('"')[0] in run.stdout  # what Claude Code printed is that reply
    foot = view.locator(".c-reply .c-reply-foot")
    expect(foot).to_contain_text("stop reason: end_turn")
    expect_usage(foot, turn["usage"])


def test_the_session_view_totals_match_the_fakes_usage(recorded, page: Page) -> None:
    run, ui = recorded
    calls = answered_calls(run)
    tools = [b["name"] for _, t in calls for b in t["reply"] if b["type"] == "tool_use"]
    page.goto(ui.url)
    page.click("nav.tabs button.tab[data-view='conversations']")
    root = page.locator("#view-conversations")
    (session,) = {e["session"] for e in events(run.logs, "request")}
    expect(root.locator("h2")).to_contain_text(session)

    totals = root.locator("dl.c-totals")
    for label, value in (
        ("model calls", len(calls)),
        ("input tokens", run.usage["input_tokens"]),
        ("output tokens", run.usage["output_tokens"]),
        ("cache write", run.usage["cache_creation_input_tokens"]),
        ("cache read", run.usage["cache_read_input_tokens"]),
        ("tool calls", len(tools)),
    ):
        expect(totals.locator(f"dt:text-is('{label}') + dd")).to_have_text(f"{value:,}")
    for name in set(tools):
        expect(root.locator(".c-session-facts")).to_contain_text(f"{name} {tools.count(name)}")

    turns = root.locator("table.c-turns tbody tr.row")
    expect(turns).to_have_count(len(calls))
    for n, (_, turn) in enumerate(calls):
        if turn["turn"] == "tool_use":
            expect(turns.nth(n)).to_contain_text(WRITE.prompt)
            expect(turns.nth(n)).to_contain_text(tools[0])
