"""Reading the journal: events, and exchanges (all events of one id, merged)."""

import json
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

# Body references are written by the proxy, but the journal is read here as
# data: only a well-formed bodies/xx/<sha256> is ever opened.
_BODY_REF = re.compile(r"bodies/([0-9a-f]{2})/\1[0-9a-f]{62}")

# Events that open an exchange (an HTTP request, a raw TCP relay), and those that
# close one; closing events' fields are merged under their own name.
OPENING_EVENTS = ("request", "tcp")
CLOSING_EVENTS = ("response", "error", "blocked", "websocket", "tcp_end")


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
    """id -> the request (or tcp) event with closing events nested under their names.

    A streamed request's size and body ref arrive with its closing event and
    are lifted into the request part. Insertion order is journal order.
    """
    merged: dict[str, dict] = {}
    for event in stream:
        kind, id = event.get("event"), event.get("id")
        if kind in OPENING_EVENTS:
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


def read_body(root: Path, ref: object) -> bytes | None:
    """The stored body a record refers to, or None (no body, a bad ref, a missing file)."""
    if not isinstance(ref, str) or not _BODY_REF.fullmatch(ref):
        return None
    try:
        return (root / ref).read_bytes()
    except OSError:
        return None
