"""An exchange's conversation from its stored bodies (commands and UI alike).

The bodies are the ones the proxy stored: decoded, redacted, perhaps cut at the
body cap, or not stored at all (undecodable, a disk error, no response yet). Each
such case becomes a note saying so; nothing here raises for what the logs hold.
"""

from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

from agentlog.conversation import Conversation, api_of, read_conversation
from agentlog.conversation.session import Turn, turn_of
from agentlog.errors import UserError
from agentlog.journal.reader import read_body


def _part(exchange: dict, name: str) -> dict:
    value = exchange.get(name)
    return value if isinstance(value, dict) else {}


def _content_type(headers: object) -> str:
    if isinstance(headers, dict):
        for name, value in headers.items():
            if str(name).lower() == "content-type" and isinstance(value, str):
                return value
    return ""


def stored_body(root: Path, event: dict, which: str) -> tuple[bytes | None, list[str]]:
    """A body an event names (`which`: request or response), and notes on what is
    missing. `event` holds the `<which>_body*` fields."""
    ref = event.get(f"{which}_body")
    if ref is None:
        undecodable = event.get(f"{which}_body_undecodable")
        error = event.get(f"{which}_body_error")
        if undecodable:
            why = f"it could not be decoded ({undecodable}); the capture holds its bytes"
        elif error:
            why = str(error)
        elif event.get(f"{which}_bytes") == 0:
            return None, [f"the {which} had no body"]
        else:
            why = "none was recorded"
        return None, [f"the {which} body was not stored: {why}"]
    try:
        data = read_body(root, ref)
    except UserError as e:
        return None, [f"the {which} body cannot be read: {e}"]
    if data is None:
        return None, [f"the {which} body's file is missing"]
    return data, []


def exchange_conversation(root: Path, exchange: dict) -> Conversation | None:
    """The conversation of a model API call (None for any other exchange)."""
    api = api_of(exchange.get("method"), exchange.get("path"))
    if api is None:
        return None
    response_event = _part(exchange, "response")
    # A streamed request body's fate comes with the closing event (merge lifts its ref).
    closing = response_event or _part(exchange, "error")
    request_event = {**exchange}
    for field in ("request_body_undecodable", "request_body_error"):
        if field not in exchange and field in closing:
            request_event[field] = closing[field]
    request, notes = stored_body(root, request_event, "request")
    response: bytes | None = None
    if response_event:
        response, more = stored_body(root, response_event, "response")
        notes += more
    elif "blocked" in exchange:
        notes.append(f"blocked: {_part(exchange, 'blocked').get('reason') or 'by the policy'}")
    elif "error" in exchange:
        notes.append(f"no response: {_part(exchange, 'error').get('error') or 'an error'}")
    else:
        notes.append("no response yet")
    status = response_event.get("status")
    conversation = read_conversation(
        api,
        request,
        response,
        request_cut=exchange.get("request_body_truncated") is True,
        response_cut=response_event.get("response_body_truncated") is True,
        response_type=_content_type(response_event.get("headers")),
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
    )
    if conversation is None:
        return None
    return replace(conversation, notes=(*notes, *conversation.notes))


def exchange_turn(root: Path, exchange: dict) -> Turn | None:
    """The exchange as one turn of its session, or None when it is no model call."""
    conversation = exchange_conversation(root, exchange)
    if conversation is None:
        return None
    status = _part(exchange, "response").get("status")
    return turn_of(
        str(exchange.get("id")),
        str(exchange.get("timestamp") or ""),
        status if isinstance(status, int) and not isinstance(status, bool) else None,
        conversation,
    )


def is_candidate(exchange: dict) -> bool:
    """Whether the exchange may be a model call (by method and path: no body read)."""
    return api_of(exchange.get("method"), exchange.get("path")) is not None


def session_turns(root: Path, exchanges: Iterable[dict]) -> list[Turn]:
    """The model calls among `exchanges` (a session's, in journal order), as turns."""
    turns = []
    for exchange in exchanges:
        if is_candidate(exchange):
            turn = exchange_turn(root, exchange)
            if turn is not None:
                turns.append(turn)
    return turns
