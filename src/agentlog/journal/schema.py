"""What a well-formed journal event is: the TypedDicts of agentlog.events, read as a schema.

The journal is data the read side cannot trust blindly (anyone who can write
the logs directory can append to it; `agentlog verify` tells), so every event
is checked before a command or the UI shows it: a field its kind declares must
have the declared type when present (fields may be missing: older journals
lack newer ones; undeclared fields are kept as they are), and `event` and `id`
must be strings. A body ref or a capture file name must be well formed, and an
opening event may not carry a field named like a closing event (merging nests
those there). Then the formatters may rely on the types.
"""

import math
import types
from typing import Literal, Union, get_args, get_origin, get_type_hints

from agentlog import events
from agentlog.logsdir import LogsDir

# A kind missing here is checked as EventBase only.
_KINDS: dict[str, type] = {
    "request": events.RequestEvent,
    "response": events.ResponseEvent,
    "error": events.ErrorEvent,
    "blocked": events.BlockedEvent,
    "tls_failed": events.TlsFailedEvent,
    "websocket": events.WebsocketEvent,
    "tcp": events.TcpEvent,
    "tcp_end": events.TcpEndEvent,
    "capture": events.CaptureEvent,
    "journal": events.JournalEvent,
}
# As journal.reader merges them (it imports this module, hence spelt again here).
_OPENING = ("request", "tcp", "tls_failed")
_CLOSING = ("response", "error", "blocked", "websocket", "tcp_end")
_BODY_REFS = ("request_body", "response_body")
_INT64 = 1 << 63
MAX_DEPTH = 64  # far deeper than any event; deep enough nesting breaks json.dumps


_BASE = get_type_hints(events.EventBase)
_SCHEMAS = {name: get_type_hints(kind) for name, kind in _KINDS.items()}


def _fits(value: object, hint: object) -> bool:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_fits(value, arg) for arg in get_args(hint))
    if origin is Literal:
        return value in get_args(hint)
    if origin is dict:
        key, item = get_args(hint)
        return isinstance(value, dict) and all(
            _fits(k, key) and _fits(v, item) for k, v in value.items()
        )
    if origin is list:
        (item,) = get_args(hint)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:  # JSON true is not a number; nothing we write leaves 64 bits
        return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64
    if hint is float:
        return (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and -_INT64 <= value < _INT64
            and math.isfinite(value)
        )
    if hint is str:
        return isinstance(value, str)
    return True  # a type this check does not know (object, Any): anything goes


def _name(hint: object) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _too_deep(value: object) -> bool:
    stack = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)
    return False


def problem(event: object) -> str | None:
    """Why `event` (parsed JSON) is not a well-formed event, or None when it is."""
    if not isinstance(event, dict):
        return "not a JSON object"
    for key in ("event", "id"):
        if not isinstance(event.get(key), str):
            return f"{key!r} is missing or not a string"
    kind = event["event"]
    schema = _SCHEMAS.get(kind, _BASE)
    for key, value in event.items():
        hint = schema.get(key)
        if hint is not None and not _fits(value, hint):
            return f"{kind} field {key!r} is not {_name(hint)}"
        if kind in _OPENING and key in _CLOSING and hint is None:
            return f"{kind} event carries a field named {key!r} (a closing event's name)"
    for key in _BODY_REFS:
        ref = event.get(key)
        if ref is not None and not LogsDir.is_body_ref(ref):
            return f"{key!r} is not a body reference (bodies/xx/<sha256>)"
    pcap = event.get("pcap_file")
    if pcap is not None and not LogsDir.is_capture_name(pcap):
        return "'pcap_file' is not a capture file name"
    if _too_deep(event):
        return f"nested more than {MAX_DEPTH} levels deep"
    return None
