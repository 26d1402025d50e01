"""Reading the journal: events, and exchanges (all events of one id, merged)."""

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

# Events that close an exchange; their fields are merged under their own name.
CLOSING_EVENTS = ("response", "error", "blocked", "websocket")


def lines(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f


def events(path: Path) -> Iterator[dict]:
    """Every complete, parseable event; a torn or garbled line is skipped."""
    for line in lines(path):
        if not line.endswith(b"\n"):
            return
        try:
            yield json.loads(line)
        except ValueError:
            continue


def exchanges(stream: Iterable[dict]) -> dict[str, dict]:
    """id -> the request event with closing events nested under their names.

    A streamed request's size and body ref arrive with its closing event and
    are lifted into the request part. Insertion order is journal order.
    """
    merged: dict[str, dict] = {}
    for event in stream:
        kind, id = event.get("event"), event.get("id")
        if kind == "request":
            merged[id] = dict(event)
        elif kind in CLOSING_EVENTS and id in merged:
            exchange = merged[id]
            exchange[kind] = event
            if exchange.get("request_bytes") is None and event.get("request_bytes") is not None:
                for field in ("request_bytes", "request_body", "request_body_truncated"):
                    exchange[field] = event.get(field)
        elif kind == "tls_failed":
            merged[id] = dict(event)
    return merged


def find(merged: dict[str, dict], prefix: str) -> list[dict]:
    """Exchanges whose id starts with `prefix` (ids are case-insensitive)."""
    prefix = prefix.upper()
    return [x for id, x in merged.items() if id.upper().startswith(prefix)]
