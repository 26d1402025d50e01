"""A model that streams a secret back in pieces, through the real proxy: curl sends a
Messages (or Chat Completions) request with its x-api-key to the fake upstream, which
streams a reply that echoes the key, a GitHub token in a tool's input and an AWS key,
each split across events (no event holds one whole). Neither the stored body, nor
`agentlog show`, nor the HAR export holds a secret, even once the pieces are joined;
the conversation view still reads the reply, with the mask where the secret was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from agentlog.conversation import anthropic, openai_chat
from agentlog.conversation.model import Reply
from agentlog.conversation.sse import parse_all
from tests.conftest import proxy_args
from tests.harness import RunningProxy, agentlog, start_proxy
from tests.model_calls import call_model, sse
from tests.secret_samples import Secret, assert_not_stored

pytestmark = pytest.mark.timeout(180)

# The key curl sends as x-api-key (tests/model_calls.py): learnt from the request,
# and of Anthropic's shape too.
API_KEY = Secret("sk-ant-api03-" + "K" * 80 + "AA", public=13)
GITHUB = Secret("ghp_" + "Xy7Qw3Er5Ty1Ui9Op2As4Df6Gh8Jk0LzXcVb", public=4)
AWS = Secret("AKIA" + "Q7W3E5R1T9Y2U4I6", public=4)


def pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


def anthropic_reply() -> str:
    said = f"Your key is {API_KEY.value}, keep it safe."
    command = json.dumps({"command": f"git clone https://x:{GITHUB.value}@example.test/r"})
    text = [{"type": "text_delta", "text": p} for p in pieces(said, 11)]
    tool = [{"type": "input_json_delta", "partial_json": p} for p in pieces(command, 9)]
    block = {"type": "tool_use", "id": "toolu_01", "name": "Bash", "input": {}}
    message = {"id": "msg_01", "type": "message", "role": "assistant", "content": []}
    return sse(
        {"type": "message_start", "message": {**message, "model": "claude-sonnet-4-5"}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": d} for d in text),
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": block},
        *({"type": "content_block_delta", "index": 1, "delta": d} for d in tool),
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}},
        {"type": "message_stop"},
    )


def chat_reply() -> str:
    said = f"export AWS_ACCESS_KEY_ID={AWS.value} then run it"
    chunks = [{"role": "assistant", "content": ""}] + [{"content": p} for p in pieces(said, 7)]
    return (
        "".join(
            "data: "
            + json.dumps(
                {
                    "id": "chatcmpl-1",
                    "object": "chat.completion.chunk",
                    "model": "gpt-4o",
                    "choices": [{"index": 0, "delta": c, "finish_reason": None}],
                }
            )
            + "\n\n"
            for c in chunks
        )
        + "data: [DONE]\n\n"
    )


REQUEST = {
    "model": "claude-sonnet-4-5",
    "max_tokens": 1024,
    "stream": True,
    "messages": [{"role": "user", "content": "say my key back"}],
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory, upstream, upstream_ca) -> Iterator[tuple[RunningProxy, dict]]:
    logs = tmp_path_factory.mktemp("split-secrets") / "logs"
    proxy = start_proxy(logs, *proxy_args(upstream, upstream_ca[1]))
    try:
        chat_request = {**REQUEST, "model": "gpt-4o"}
        ids = {
            "anthropic": call_model(proxy, "anthropic.messages", REQUEST, anthropic_reply()),
            "chat": call_model(proxy, "openai.chat", chat_request, chat_reply()),
        }
        yield proxy, ids
    finally:
        proxy.stop()


READERS: dict[str, Callable[..., Reply | None]] = {
    "anthropic": anthropic.read_stream,
    "chat": openai_chat.read_stream,
}


def joined(api: str, body: str) -> str:
    """What a reader of the body gets by joining its pieces (no redaction of its own)."""
    reply = READERS[api](parse_all([body.encode()])[0])
    assert reply is not None and reply.blocks, body
    return "\n".join(f"{b.text}\n{json.dumps(b.input)}" for b in reply.blocks)


def assert_no_secret(text: str, where: str) -> None:
    for secret in (API_KEY, GITHUB, AWS):
        leak = secret.leaked_in(text.encode())
        assert leak is None, f"{leak!r} in {where}"


def test_the_fake_really_splits_the_secrets():
    """No event holds a secret whole: only joining the pieces finds them."""
    for body in (anthropic_reply(), chat_reply()):
        for secret in (API_KEY, GITHUB, AWS):
            assert secret.value not in body
    assert API_KEY.value in joined("anthropic", anthropic_reply())
    assert AWS.value in joined("chat", chat_reply())


def test_the_stored_body_and_show_hold_no_joined_secret(recorded):
    proxy, ids = recorded
    for api, id in ids.items():
        shown = agentlog("show", id, "--logs", proxy.logs)
        assert shown.returncode == 0, shown.stderr
        assert_no_secret(shown.stdout, f"agentlog show {id}")
        with_bodies = agentlog("show", id, "--bodies", "--logs", proxy.logs)
        assert with_bodies.returncode == 0, with_bodies.stderr
        exchange = json.loads(with_bodies.stdout)
        body = exchange["response"]["response_body_text"]
        stored = (proxy.logs / exchange["response"]["response_body"]).read_text()
        assert body == stored and "[REDACTED]" in stored
        for text, where in ((stored, "the stored body"), (joined(api, stored), "its pieces")):
            assert_no_secret(text, f"{where} of {api}")
    assert_not_stored(proxy.logs, API_KEY, GITHUB, AWS)


def test_the_har_export_holds_no_joined_secret(recorded, tmp_path):
    proxy, _ = recorded
    out = tmp_path / "all.har"
    result = agentlog("export", "--har", "--logs", proxy.logs, "-o", out)
    assert result.returncode == 0, result.stderr
    entries = json.loads(out.read_text())["log"]["entries"]
    for api, entry in zip(("anthropic", "chat"), entries, strict=True):
        text = entry["response"]["content"]["text"]
        assert_no_secret(text, "the HAR export")
        assert_no_secret(joined(api, text), "the HAR export's pieces")


def test_the_conversation_still_reads_with_the_mask_where_the_secret_was(recorded):
    proxy, ids = recorded
    out = agentlog("show", ids["anthropic"], "--conversation", "--logs", proxy.logs)
    assert out.returncode == 0, out.stderr
    assert "Your key is [REDACTED], keep it safe." in out.stdout
    assert "[tool call] Bash toolu_01" in out.stdout
    assert "git clone https://x:[REDACTED]@example.test/r" in out.stdout
    assert_no_secret(out.stdout, "the conversation")
    out = agentlog("show", ids["chat"], "--conversation", "--logs", proxy.logs)
    assert out.returncode == 0, out.stderr
    assert "export AWS_ACCESS_KEY_ID=[REDACTED] then run it" in out.stdout
