"""One exchange as JSON with its stored (redacted) bodies inlined as text."""

from pathlib import Path

from agentlog.journal.reader import read_body


def body_text(root: Path, ref: object) -> str | None:
    raw = read_body(root, ref)
    return None if raw is None else raw.decode("utf-8", "backslashreplace")


def with_bodies(root: Path, exchange: dict) -> dict:
    """A copy of `exchange` with `request_body_text` and `response.response_body_text`."""
    shown = dict(exchange)
    shown["request_body_text"] = body_text(root, exchange.get("request_body"))
    if "response" in exchange:
        response = dict(exchange["response"])
        response["response_body_text"] = body_text(root, response.get("response_body"))
        shown["response"] = response
    return shown
