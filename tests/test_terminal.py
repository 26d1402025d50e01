"""An agent that sends terminal escapes and bidi overrides cannot drive the terminal
of whoever reads the journal: every command that prints agent text escapes them,
and JSON output still parses to exactly what was recorded."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.formats.text import printable, printable_json, printable_json_text
from tests.conftest import PLAIN
from tests.harness import agentlog
from tests.samples import assert_terminal_safe

pytestmark = pytest.mark.timeout(60)

# What an attacker reaches for: CSI (C1), ESC sequences, bidi overrides and
# isolates, invisible marks, a line separator, a tag character (hidden text).
HOSTILE = (
    "a\x9b31m\x1b]0;owned\x07\u202etxt.exe\u2066\u2069\u200e\u200f\u061c\u200b\u2028\U000e0041z"
)


def run(*args: object) -> str:
    result = agentlog(*args)
    assert result.returncode == 0, result.stderr
    assert_terminal_safe(result.stdout + result.stderr)
    return result.stdout


def test_every_command_escapes_what_the_agent_sent(proxy):
    """Headers, path and body carry the attack; ls, show, tail and the HAR print it safely."""
    body = f"body {HOSTILE}".encode()
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as agent:
        agent.sendall(
            f"POST http://{PLAIN}/echo?q={HOSTILE} HTTP/1.1\r\nHost: {PLAIN}\r\n"
            f"X-Evil: {HOSTILE}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n".encode()
            + body
        )
        assert agent.recv(65536).startswith(b"HTTP/1.1 ")
    proxy.wait_for(lambda es: any(e["event"] in ("response", "error") for e in es))
    (request,) = proxy.events("request")
    assert request["headers"]["x-evil"] == HOSTILE  # the journal keeps it as sent
    logs = proxy.logs

    assert "\\u202e" in run("ls", "--logs", logs)
    (listed,) = [json.loads(line) for line in run("ls", "--json", "--logs", logs).splitlines()]
    assert listed["headers"]["x-evil"] == HOSTILE  # escaped, yet the same value

    shown = json.loads(run("show", request["id"], "--bodies", "--logs", logs))
    assert shown["headers"]["x-evil"] == HOSTILE
    assert shown["request_body_text"] == f"body {HOSTILE}"
    assert shown["path"] == f"/echo?q={HOSTILE}"

    tailed = run("tail", "--json", "--no-follow", "--logs", logs).splitlines()
    assert any(json.loads(line).get("headers", {}).get("x-evil") == HOSTILE for line in tailed)
    run("tail", "--no-follow", "--logs", logs)

    har = logs.parent / "run.har"
    run("export", "--har", "-o", har, "--logs", logs)
    assert_terminal_safe(har.read_text())  # `cat run.har` is safe too
    (entry,) = json.loads(har.read_text())["log"]["entries"]
    assert {"name": "x-evil", "value": HOSTILE} in entry["request"]["headers"]


def test_a_lone_surrogate_in_the_journal_prints(tmp_path):
    """JSON may spell a lone surrogate ("\\ud800"): not text, so printing it raw fails
    (or shows garbage). Every command escapes it, as JSON that still parses to it."""
    journal = tmp_path / "requests.jsonl"
    event = {
        "event": "request",
        "id": "01SURROGATE",
        "method": "GET",
        "scheme": "https",
        "domain": "x.test",
        "port": 443,
        "path": "/\ud800-\udfff\x9b",
        "headers": {"x-\udc80": "\u202e"},
    }
    journal.write_text(json.dumps(event) + "\n")  # ASCII JSON: \ud800 escapes
    assert json.loads(run("ls", "--json", "--logs", tmp_path)) == event
    assert json.loads(run("show", "01SUR", "--logs", tmp_path)) == event
    assert json.loads(run("tail", "--json", "--no-follow", "--logs", tmp_path)) == event
    assert "\\ud800" in run("ls", "--logs", tmp_path)
    assert "\\ud800" in run("tail", "--no-follow", "--logs", tmp_path)
    har = tmp_path / "x.har"
    run("export", "--har", "-o", har, "--logs", tmp_path)
    assert json.loads(har.read_text())["log"]["entries"][0]["request"]["url"].endswith(
        "/\ud800-\udfff\x9b"
    )


def test_error_messages_are_one_escaped_line(tmp_path):
    """What a command says when it fails may quote the journal or the user's input."""
    (tmp_path / "requests.jsonl").write_text("")
    result = agentlog("show", "\x1b[2J\u202e\nX", "--logs", tmp_path)
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert_terminal_safe(result.stderr)


def test_tail_follows_with_escapes(tmp_path):
    journal = tmp_path / "requests.jsonl"
    journal.write_text("")
    follower = subprocess.Popen(
        [sys.executable, "-m", "agentlog", "tail", "--json", "--logs", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        event = {"event": "journal", "id": "J", "action": HOSTILE}
        with journal.open("a") as f:
            f.write(json.dumps(event, ensure_ascii=False) + "\n")
        line = follower.stdout.readline()
    finally:
        follower.kill()
        follower.wait()
    assert_terminal_safe(line)
    assert json.loads(line) == event


# -- the functions, for any text ----------------------------------------------------

every_char = st.characters(min_codepoint=0, max_codepoint=0x10FFFF, exclude_categories=())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(every_char),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(every_char), inner),
    max_leaves=12,
)


@given(json_values, st.sampled_from([None, 2]))
def test_printable_json_parses_back_to_the_same_value(value, indent):
    text = printable_json(value, indent)
    assert_terminal_safe(text)
    assert json.loads(text) == value
    assert printable_json_text(json.dumps(value, ensure_ascii=False)) == printable_json(value)


@given(st.text(every_char))
def test_printable_is_one_safe_line_and_leaves_printable_text_alone(text):
    shown = printable(text)
    assert_terminal_safe(shown) and "\n" not in shown
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text


def test_printable_spellings():
    assert printable("\x1b[31m\x9b\u202e\U000e0041ok é 中") == (
        "\\x1b[31m\\x9b\\u202e\\U000e0041ok é 中"
    )
    assert printable_json("\U000e0041\x7f\n") == '"\\udb40\\udc41\\u007f\\n"'
