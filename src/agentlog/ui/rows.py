"""What the UI shows of an exchange: its list row, its search text, its bodies (pure)."""

import json
import math
from collections.abc import Callable

from agentlog.logsdir import LogsDir

# Closing events that decide an exchange's kind, strongest first.
_KIND_EVENTS = ("blocked", "error", "websocket")
# Closing events that carry text to search: the search document is written at the first.
_TEXT_CLOSINGS = frozenset(("response", "error", "blocked", "tcp_end"))
_ALL_CLOSINGS = frozenset(("response", "error", "blocked", "websocket", "tcp_end"))
_OPENINGS = ("request", "tcp")

BODY_TEXT_CAP = 256 * 1024  # what the page is given to display
SEARCH_BODY_CAP = 64 * 1024  # what of each body free-text search sees
_INT64 = 1 << 63

# The row's columns, in table order (index.py's `exchanges` table; api.py's Row).
ROW_FIELDS = (
    "id",
    "seq",
    "updated_seq",
    "timestamp",
    "session",
    "kind",
    "state",
    "method",
    "scheme",
    "domain",
    "port",
    "path",
    "status",
    "outcome",
    "request_bytes",
    "response_bytes",
    "ttfb_ms",
    "duration_ms",
    "pcap_file",
    "capture_id",
)


def kind_of(exchange: dict) -> str:
    if exchange.get("event") == "tls_failed":
        return "tls_failed"
    for kind in _KIND_EVENTS:
        if kind in exchange:
            return kind
    return str(exchange.get("event") or "request")


def is_open(exchange: dict) -> bool:
    return exchange.get("event") in _OPENINGS and exchange.keys().isdisjoint(_ALL_CLOSINGS)


def searchable(exchange: dict) -> bool:
    """Whether its search document is due: it is final as far as text goes (a request
    once a response, error or block closed it; a tls_failed at once)."""
    if exchange.get("event") in _OPENINGS:
        return not exchange.keys().isdisjoint(_TEXT_CLOSINGS)
    return True


def outcome_of(exchange: dict) -> str:
    kind = kind_of(exchange)
    if kind == "tls_failed":
        return "TLS-FAIL"
    if kind in ("blocked", "error"):
        return kind.upper()
    if kind == "websocket":
        return "WS"
    if kind == "tcp":  # a raw relay: how it ended
        return "CLOSED" if "tcp_end" in exchange else "..."
    if "response" in exchange:
        return str(part(exchange, "response").get("status"))
    return "..."


def part(exchange: dict, name: str) -> dict:
    """A nested closing event, or {} (whatever the field holds)."""
    value = exchange.get(name)
    return value if isinstance(value, dict) else {}


def closing(exchange: dict) -> dict:
    """The event that ended the exchange's HTTP part: its response, or its error."""
    return part(exchange, "response") or part(exchange, "error")


def _int(value: object) -> int | None:
    """An integer SQLite can hold (64 bits), or None."""
    return value if type(value) is int and -_INT64 <= value < _INT64 else None


def _float(value: object) -> float | None:
    """A finite number (JSON has no other), or None; an int past 64 bits too is None
    (a float() of it may overflow)."""
    if type(value) is float:  # neither a bool nor any other subclass: what JSON parses to
        return value if math.isfinite(value) else None
    return float(value) if type(value) is int and -_INT64 <= value < _INT64 else None


def clean(text: str) -> str:
    """Text SQLite and UTF-8 accept: a lone surrogate (JSON "\\ud800") becomes U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _str(value: object) -> str | None:
    return clean(value) if type(value) is str else None


def row_of(exchange: dict, updated_seq: int) -> dict:
    """The list row (docs/ui-api.md); every value typed, whatever the journal held."""
    response = part(exchange, "response")
    relay = part(exchange, "tcp_end")  # a raw TCP relay's bytes each way and duration
    pcap_file = _str(exchange.get("pcap_file"))
    return {
        "id": clean(str(exchange.get("id"))),
        "seq": _int(exchange.get("seq")) or 0,
        "updated_seq": updated_seq,
        "timestamp": _str(exchange.get("timestamp")) or "",
        "session": _str(exchange.get("session")) or "",
        "kind": kind_of(exchange),
        "state": "open" if is_open(exchange) else "closed",
        "method": _str(exchange.get("method")),
        "scheme": _str(exchange.get("scheme")),
        "domain": _str(exchange.get("domain")),
        "port": _int(exchange.get("port")),
        "path": _str(exchange.get("path")),
        "status": _int(response.get("status")),
        "outcome": outcome_of(exchange),
        "request_bytes": _int(exchange.get("request_bytes", relay.get("bytes_from_client"))),
        "response_bytes": _int(
            closing(exchange).get("response_bytes", relay.get("bytes_from_server"))
        ),
        "ttfb_ms": _float(response.get("ttfb_ms")),
        "duration_ms": _float(response.get("duration_ms", relay.get("duration_ms"))),
        "pcap_file": pcap_file,
        "capture_id": LogsDir.capture_id(pcap_file) if pcap_file else None,
    }


def _headers_text(headers: object) -> str:
    if not isinstance(headers, dict):
        return ""
    return clean("".join([f"{name}: {value}\n" for name, value in headers.items()]))


def search_text(raw: bytes | None) -> str:
    """A body as free text, or "" when it is binary."""
    if not raw or b"\0" in raw[:1024]:
        return ""
    return raw[:SEARCH_BODY_CAP].decode("utf-8", "ignore")


def search_doc(exchange: dict, body_text: Callable[[object], str]) -> tuple[str, str, str]:
    """(path, headers, bodies): the free text of an exchange, for FTS5; `body_text`
    gives a body ref's `search_text`."""
    response = part(exchange, "response")
    headers = _headers_text(exchange.get("headers")) + _headers_text(response.get("headers"))
    bodies = [
        body_text(exchange.get("request_body")),
        body_text(response.get("response_body")),
    ]
    return (_str(exchange.get("path")) or "", headers, "\n".join(b for b in bodies if b))


def _content_type(headers: object) -> str | None:
    if isinstance(headers, dict):
        for name, value in headers.items():
            if str(name).lower() == "content-type" and isinstance(value, str):
                return value
    return None


def body_view(
    raw: bytes | None, ref: object, *, headers: object, size: object, capped: object, download: str
) -> dict | None:
    """A stored body as the page shows it (docs/ui-api.md, "A body")."""
    if raw is None or not isinstance(ref, str):
        return None
    text: str | None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    kind = "binary" if text is None or "\0" in text else "text"
    if kind == "text":
        try:
            json.loads(raw)
            kind = "json"
        except ValueError:
            pass
    else:
        text = None
    truncated = text is not None and len(text) > BODY_TEXT_CAP
    return {
        "ref_id": ref.rsplit("/", 1)[-1],
        "size": _int(size),
        "stored_bytes": len(raw),
        "capped": bool(capped),
        "content_type": _content_type(headers),
        "kind": kind,
        "text": text[:BODY_TEXT_CAP] if text is not None else None,
        "truncated": truncated,
        "download": download,
    }


def body_parts(exchange: dict) -> dict[str, tuple[object, object, object, object]]:
    """which -> (body ref, headers, size, capped), for the request and the response."""
    response = part(exchange, "response")
    return {
        "request": (
            exchange.get("request_body"),
            exchange.get("headers"),
            exchange.get("request_bytes"),
            exchange.get("request_body_truncated"),
        ),
        "response": (
            response.get("response_body"),
            response.get("headers"),
            response.get("response_bytes"),
            response.get("response_body_truncated"),
        ),
    }
