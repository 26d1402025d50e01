"""Which model API a request calls, and the conversation its stored bodies hold (pure).

A call is recognised by its method and path (POST .../v1/messages, .../chat/completions,
.../responses) and then by the shape of its request body: a body of another shape
is not a conversation. Whatever the bytes, reading never raises: what cannot be read
is said in the conversation's notes.

The reply is reassembled from pieces, and a secret split across pieces (a tool's
input streamed as JSON fragments) escaped the redaction of the stored body, which
saw only the pieces: the reassembled reply is redacted again, with the same rules.
And where the stored body masked a secret to the end of its piece, the next piece
starts with the rest of it: token characters glued to a mask are masked too.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import replace
from typing import Protocol

from agentlog.conversation import anthropic, openai_chat, openai_responses
from agentlog.conversation.model import Api, Block, Conversation, Reply, Request
from agentlog.conversation.partial_json import parse_prefix
from agentlog.conversation.sse import SseEvent, parse_all
from agentlog.redact import Redactor

_SUFFIXES: tuple[tuple[str, Api], ...] = (
    ("/v1/messages", "anthropic.messages"),
    ("/chat/completions", "openai.chat"),
    ("/responses", "openai.responses"),
)


class _Reader(Protocol):
    def read_request(self, doc: object, complete: bool = True) -> Request | None: ...
    def read_reply(self, doc: object) -> Reply | None: ...
    def read_stream(self, events: Iterable[SseEvent]) -> Reply | None: ...


_READERS: dict[Api, _Reader] = {
    "anthropic.messages": anthropic,
    "openai.chat": openai_chat,
    "openai.responses": openai_responses,
}
_REDACTOR = Redactor()
# A mask (with --fingerprint, [REDACTED:<hash>]) and the token characters glued to it.
_GLUED = re.compile(r"(\[REDACTED(?::[0-9a-f]{1,64})?\])[A-Za-z0-9_+/.~-]+=*")


def api_of(method: object, path: object) -> Api | None:
    """The API a request's method and path name, or None."""
    if method != "POST" or not isinstance(path, str):
        return None
    bare = path.partition("?")[0].partition("#")[0].rstrip("/")
    for suffix, api in _SUFFIXES:
        if bare.endswith(suffix):
            return api
    return None


def read_conversation(
    api: Api,
    request: bytes | None,
    response: bytes | None,
    *,
    request_cut: bool = False,
    response_cut: bool = False,
    response_type: str = "",
    status: int | None = None,
) -> Conversation | None:
    """The conversation of one call from its stored bodies (None: a body that exists
    but is not one). `*_cut`: the body was stored cut at the body cap."""
    reader = _READERS[api]
    notes: list[str] = []
    asked = Request()
    if request is not None:
        doc, whole = parse_prefix(request.decode("utf-8", "replace"))
        found = reader.read_request(doc, whole)
        if found is None:
            return None
        asked = found
        if not whole:
            notes.append(
                "the request body was stored cut at the body cap: only its start was read"
                if request_cut
                else "the request body is not whole JSON: only its start was read"
            )
    reply = None
    if response is not None:
        reply = _reply(reader, response, response_type, response_cut)
        if response_cut:
            notes.append("the response body was stored cut at the body cap: the reply stops there")
        elif not response.strip():
            notes.append("the response body is empty")
        elif reply is None:
            notes.append("the response body is not a reply of this API")
        elif not reply.complete:
            notes.append("the reply ended early: it is shown as far as it goes")
    if status is not None and not 200 <= status < 300:
        reply = reply or Reply()
        if reply.error is None:
            reply = replace(reply, error=f"HTTP {status}")
    return Conversation(api, asked, None if reply is None else _redacted(reply), tuple(notes))


def _reply(reader: _Reader, body: bytes, content_type: str, cut: bool) -> Reply | None:
    """The reply a body holds: JSON or a stream, whatever its content type claims."""
    text = body.decode("utf-8", "replace")
    stream = "event-stream" in content_type.lower()
    reply = None
    if text.lstrip()[:1] in ("{", "["):
        doc, whole = parse_prefix(text)
        reply = reader.read_reply(doc)
        if reply is not None and not whole:
            reply = replace(reply, complete=False)
    open_ = False
    if reply is None:
        events, open_ = parse_all([body])
        reply = reader.read_stream(events)
    if reply is None and (cut or not text.strip() or (stream and open_)):
        return Reply(streamed=stream)  # nothing of it arrived, or was kept
    return reply


# -- the reassembled reply, redacted again -------------------------------------------


def _clean_text(text: str) -> str:
    if not text:
        return text
    data = text.encode("utf-8", "surrogatepass")
    return _GLUED.sub(r"\1", _REDACTOR.body(data, "text/plain").decode("utf-8", "replace"))


def _clean_json(value: object) -> object:
    if value is None or isinstance(value, bool | int | float):
        return value
    try:
        data = json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")
        clean = _REDACTOR.body(data, "application/json").decode("utf-8", "replace")
        return json.loads(_GLUED.sub(r"\1", clean))  # no quote or backslash is swallowed
    except (ValueError, TypeError, RecursionError):
        return None


def _clean_block(block: Block) -> Block:
    return replace(block, text=_clean_text(block.text), input=_clean_json(block.input))


def _redacted(reply: Reply) -> Reply:
    blocks = tuple(_clean_block(b) for b in reply.blocks)
    error = None if reply.error is None else _clean_text(reply.error)
    return replace(reply, blocks=blocks, error=error)
