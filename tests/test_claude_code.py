"""The real Claude Code CLI under `agentlog run`, against the fake Anthropic API (issue 11).

Each scenario (tests/claude_runs.py) is run once, on first use, and shared by
the tests that check it. Claude Code runs as `nobody` in the sandbox, its only
way out the proxy; the proxy allows api.anthropic.com alone and routes it to the
fake on 127.0.0.1, so nothing leaves this machine (checked below, per run).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.claude_runs import (
    ANTHROPIC,
    API_KEY,
    OVERLOADED,
    RATE_LIMITED,
    SIDE_CALLS,
    TEXT,
    WRITE,
    ClaudeRun,
    Scenario,
    claude_run,
)
from tests.conftest import assert_every_request_closed_once
from tests.harness import agentlog, verify
from tests.netns import can_make_namespaces
from tests.sandbox_runs import events

pytestmark = [
    pytest.mark.timeout(600),  # the first run installs Claude Code from the npm registry
    pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft"),
]

SCENARIOS = [TEXT, WRITE, SIDE_CALLS, RATE_LIMITED, OVERLOADED]
MESSAGES = "/v1/messages?beta=true"
ESSENTIAL = {"/api/claude_code/settings", "/api/claude_code/policy_limits", MESSAGES}


@pytest.fixture(scope="module")
def recorded() -> Iterator[Callable[[Scenario], ClaudeRun]]:
    """The run of a scenario, recorded the first time a test asks for it."""
    runs: dict[str, ClaudeRun] = {}
    with ExitStack() as stack:

        def run_of(scenario: Scenario) -> ClaudeRun:
            if scenario.name not in runs:
                runs[scenario.name] = stack.enter_context(claude_run(scenario))
            return runs[scenario.name]

        yield run_of


def journal(run: ClaudeRun, kind: str | None = None) -> list[dict]:
    return events(run.logs, kind)


def exchanges(run: ClaudeRun) -> list[tuple[dict, dict]]:
    """(request, its outcome) in the order the requests were recorded."""
    found = journal(run)
    outcomes = {e["id"]: e for e in found if e["event"] in ("response", "error", "blocked")}
    return [(e, outcomes[e["id"]]) for e in found if e["event"] == "request"]


def messages_calls(run: ClaudeRun) -> list[tuple[dict, dict]]:
    return [(q, a) for q, a in exchanges(run) if q["method"] == "POST" and q["path"] == MESSAGES]


def succeeded(run: ClaudeRun) -> None:
    assert run.result.returncode == 0, run.result.stdout + run.result.stderr
    assert "Traceback" not in run.result.stderr, run.result.stderr


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_every_run_is_whole_verified_audited_and_stays_on_this_machine(recorded, scenario):
    run = recorded(scenario)
    succeeded(run)
    found = journal(run)
    assert found[-1]["event"] == "journal" and found[-1]["action"] == "stop"
    assert_every_request_closed_once(found)
    checked = verify(run.logs)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    audited = agentlog("audit", "--logs", run.logs)
    assert audited.returncode == 0, audited.stdout + audited.stderr
    # Every upstream connection went to the fake; what was not for it was refused.
    fake = f"127.0.0.1:{run.upstream_port}"
    dialled = {e["upstream_dst"] for e in found if e.get("upstream_dst")}
    assert dialled == {fake}
    for request, outcome in exchanges(run):
        assert request["domain"] == ANTHROPIC or outcome["event"] == "blocked", request
    assert not [e for e in found if e["event"] in ("tcp", "bypass")]
    # Every request the fake answered is in the journal (concurrent ones in either order).
    answered = sorted((e["method"], e["path"]) for e in run.requests)
    recorded_calls = sorted(
        (q["method"], q["path"]) for q, a in exchanges(run) if a.get("upstream_dst") == fake
    )
    assert recorded_calls == answered


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_the_api_key_is_nowhere_in_the_logs_but_the_captures_and_keys_log(recorded, scenario):
    run = recorded(scenario)
    succeeded(run)
    sent = [e["headers"].get("x-api-key") for e in run.requests if e["path"] == MESSAGES]
    assert sent and set(sent) == {API_KEY}  # it went out, through the proxy, unchanged
    searched = [
        path
        for path in run.logs.rglob("*")
        if path.is_file() and not path.name.startswith("capture_") and path.name != "keys.log"
    ]
    assert any(path.parent.parent.name == "bodies" for path in searched)
    assert [path for path in searched if API_KEY.encode() in path.read_bytes()] == []


def test_claude_p_prints_the_fakes_text_reply(recorded):
    run = recorded(TEXT)
    succeeded(run)
    assert run.stdout == f'Fake reply: you said "{TEXT.prompt}"\n'
    assert [t["turn"] for t in run.turns] == ["text"]


def test_the_messages_call_is_recorded_redacted_and_streamed(recorded):
    run = recorded(TEXT)
    [(request, response)] = messages_calls(run)
    assert request["domain"] == ANTHROPIC and request["scheme"] == "https"
    assert request["headers"]["x-api-key"] == "[REDACTED]"
    assert request["decision"] == "allowed"
    body = json.loads((run.logs / request["request_body"]).read_bytes())
    assert body["stream"] is True
    assert TEXT.prompt in json.dumps(body["messages"])
    assert response["status"] == 200
    assert response["headers"]["content-type"].startswith("text/event-stream")
    assert response["ttfb_ms"] * 2 < response["duration_ms"], response  # events 40 ms apart
    stream = (run.logs / response["response_body"]).read_text()
    for event in ("message_start", "content_block_delta", "message_delta", "message_stop"):
        assert f"event: {event}\n" in stream
    assert '"output_tokens": 20' in stream  # the fake's text-turn usage


def test_a_tool_use_turn_writes_the_file_then_the_final_text_comes(recorded):
    run = recorded(WRITE)
    succeeded(run)
    written = run.workdir / "hello.txt"
    assert written.read_text() == "hello from the fake"
    assert written.stat().st_uid != 0  # written by the agent's user, in its working directory
    assert [t["turn"] for t in run.turns] == ["tool_use", "final"]
    [call] = [b for b in run.turns[0]["reply"] if b["type"] == "tool_use"]
    assert call["input"] == {"file_path": str(written), "content": "hello from the fake"}
    assert run.stdout.startswith('Done: the tool answered "File created successfully')
    # The second call carried the tool's result back; both were recorded.
    calls = messages_calls(run)
    assert [a["status"] for _, a in calls] == [200, 200]
    second = json.loads((run.logs / calls[1][0]["request_body"]).read_bytes())
    result = second["messages"][-1]["content"][0]
    assert result["type"] == "tool_result" and result["tool_use_id"] == call["id"]
    # The fake's usage numbers, summed: what a session view must show.
    assert run.usage == {
        "input_tokens": 500,
        "output_tokens": 100,
        "cache_creation_input_tokens": 1200,
        "cache_read_input_tokens": 11000,
    }


def tshark(*args: str | Path) -> str:
    result = subprocess.run(
        ["tshark", *map(str, args)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_capture_decrypts_with_keys_log_and_shows_the_messages_call(recorded):
    run = recorded(WRITE)
    request, _ = messages_calls(run)[0]
    proxy_port = request["agent_dst"].rsplit(":", 1)[1]  # CONNECT there: read it as HTTP
    client_port = request["client"].rsplit(":", 1)[1]
    shown = tshark(
        *("-r", run.logs / request["pcap_file"]),
        *("-o", f"tls.keylog_file:{run.logs / 'keys.log'}", "-d", f"tcp.port=={proxy_port},http"),
        *("-Y", f'tcp.port == {client_port} && http.request.method == "POST"'),
        *("-T", "fields", "-e", "http.request.uri", "-e", "http.host", "-e", "http.request.line"),
    )
    [uri, host, head] = shown.splitlines()[0].split("\t")
    assert (uri, host) == (MESSAGES, ANTHROPIC), shown
    assert f"x-api-key: {API_KEY}" in head  # the wire as it was: why captures stay root's
    # Without the keys it is TLS and nothing more.
    hidden = tshark(
        *("-r", run.logs / request["pcap_file"], "-d", f"tcp.port=={proxy_port},http"),
        *("-Y", 'http.request.method == "POST"'),
    )
    assert hidden.strip() == ""


def test_without_the_nonessential_switch_the_side_calls_are_recorded_too(recorded):
    quiet, chatty = recorded(TEXT), recorded(SIDE_CALLS)
    succeeded(chatty)
    assert chatty.stdout == f'Fake reply: you said "{SIDE_CALLS.prompt}"\n'
    quiet_paths = {q["path"] for q, _ in exchanges(quiet)}
    assert quiet_paths <= ESSENTIAL
    side_calls = {q["path"].split("?")[0] for q, _ in exchanges(chatty)} - ESSENTIAL
    assert "/api/event_logging/v2/batch" in side_calls, side_calls  # its telemetry, for one
    # Each is recorded with its outcome: routed to the fake (allowed), or refused.
    for request, outcome in exchanges(chatty):
        assert request["decision"] in ("allowed", "blocked")
        assert outcome["event"] == ("response" if request["decision"] == "allowed" else "blocked")


@pytest.mark.parametrize(
    ("scenario", "status", "kind"),
    [(RATE_LIMITED, 429, "rate_limit_error"), (OVERLOADED, 529, "overloaded_error")],
    ids=["429", "529"],
)
def test_a_refused_call_and_its_retry_are_each_recorded(recorded, scenario, status, kind):
    run = recorded(scenario)
    succeeded(run)
    assert run.stdout == f'Fake reply: you said "{scenario.prompt}"\n'
    calls = messages_calls(run)
    assert [a["status"] for _, a in calls] == [status, 200]
    assert len({q["id"] for q, _ in calls}) == 2
    assert calls[0][1]["headers"]["retry-after"] == "1"
    error = json.loads((run.logs / calls[0][1]["response_body"]).read_bytes())
    assert error["error"]["type"] == kind
    assert [e["status"] for e in run.requests if e["path"] == MESSAGES] == [status, 200]
