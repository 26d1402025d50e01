"""Model API calls made with curl through a real proxy to the fake upstream, which
answers with the body the test gives (tests/fakes/app.py: /v1/messages,
/v1/chat/completions and /v1/responses answer as the x-reply header says)."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

from tests.conftest import API
from tests.harness import RunningProxy

SAMPLES = Path(__file__).resolve().parent / "llm_samples"
PATHS = {
    "anthropic.messages": "/v1/messages",
    "openai.chat": "/v1/chat/completions",
    "openai.responses": "/v1/responses",
}


def sample(name: str) -> str:
    return (SAMPLES / name).read_text(encoding="utf-8")


def sse(*events: dict) -> str:
    """An Anthropic-style stream of these events (each named by its type)."""
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)


def call_model(
    proxy: RunningProxy,
    api: str,
    request: dict | bytes,
    reply: str,
    *,
    status: int = 200,
    content_type: str = "text/event-stream",
    headers: list[list[str]] | None = None,
    query: str = "",
) -> str:
    """POST `request` to the API's path on the fake; it answers `reply`. Returns the
    request's id once its response is in the journal."""
    spec = {
        "status": status,
        "headers": [["content-type", content_type], *(headers or [])],
        "body": reply,
        "chunked": True,
    }
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    path = PATHS[api] + query
    before = {e["id"] for e in proxy.events("request")}
    got = subprocess.run(
        [
            "curl",
            "-sS",
            "--max-time",
            "20",
            "-x",
            proxy.url,
            "--cacert",
            str(proxy.ca),
            "-H",
            "content-type: application/json",
            "-H",
            "x-api-key: sk-ant-api03-" + "K" * 80 + "AA",
            "-H",
            "x-reply: " + base64.b64encode(json.dumps(spec).encode()).decode(),
            "--data-binary",
            "@-",
            f"https://{API}{path}",
        ],
        input=body,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert got.returncode == 0, got.stderr

    def answered(events: list[dict]) -> bool:
        new = [e["id"] for e in events if e["event"] == "request" and e["id"] not in before]
        return len(new) == 1 and any(e["event"] == "response" and e["id"] == new[0] for e in events)

    events = proxy.wait_for(answered)
    return next(e["id"] for e in events if e["event"] == "request" and e["id"] not in before)
