"""Anthropic Messages API (POST /v1/messages): the request, and the reply as one JSON
message or as its SSE stream reassembled (pure).

The stream: message_start (the message, empty, with the input usage), then per
content block content_block_start, content_block_delta (text_delta, thinking_delta,
signature_delta, input_json_delta: a tool's input as JSON text in pieces),
content_block_stop; message_delta (stop_reason, and usage whose counts are
cumulative: they replace, never add to, what came before), message_stop. ping
events keep the connection alive; an error event ends a stream that failed.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from agentlog.conversation.model import Block, Message, Reply, Request, Usage
from agentlog.conversation.sse import SseEvent
from agentlog.conversation.values import (
    compact,
    count,
    flag,
    items,
    loads,
    obj,
    placeholder,
    text,
    tool_call,
)

_TOOL_USES = ("tool_use", "server_tool_use", "mcp_tool_use")
_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
)


def _texts(content: object) -> list[str]:
    """The text of a string or of a list of blocks (a system prompt, a tool result)."""
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    for item in items(content):
        block = block_of(item)
        if block.text:
            out.append(block.text)
    return out


def block_of(value: object) -> Block:
    """One content block of a request or a reply, of any type."""
    b = obj(value)
    kind = text(b.get("type")) or "?"
    if kind == "text":
        return Block("text", text=text(b.get("text")) or "")
    if kind == "thinking":
        return Block("thinking", text=text(b.get("thinking")) or "")
    if kind == "redacted_thinking":
        return Block("redacted_thinking")
    if kind in _TOOL_USES:
        name, id = text(b.get("name")), text(b.get("id"))
        return Block("tool_use", name=name, id=id, input=b.get("input"))
    if kind == "tool_result" or kind.endswith("_tool_result"):
        content = b.get("content")
        said = _texts(content) if kind == "tool_result" else []
        if not said and content is not None:
            said = [content if isinstance(content, str) else compact(content)]
        return Block(
            "tool_result",
            text="\n".join(said),
            id=text(b.get("tool_use_id")),
            is_error=flag(b.get("is_error")),
            name=None if kind == "tool_result" else kind,
        )
    if kind in ("image", "document"):
        block = placeholder(kind, b.get("source"))
        title = text(b.get("title"))
        return replace(block, text=f"{block.text} {title}") if title else block
    return Block("other", text=f"[{kind}]")


def usage_of(value: object, base: Usage | None = None) -> Usage:
    """Usage counts; those present replace `base`'s (message_delta's are cumulative)."""
    u = obj(value)
    base = base or Usage()
    return Usage(**{f: _or(count(u.get(f)), getattr(base, f)) for f in _USAGE_FIELDS})


def _or(value: int | None, default: int | None) -> int | None:
    return default if value is None else value


def read_request(doc: object, complete: bool = True) -> Request | None:
    """The request, or None when the body is not a Messages request."""
    body = obj(doc)
    messages = body.get("messages")
    if not isinstance(messages, list) and not (body and not complete):
        return None
    system = body.get("system")
    return Request(
        model=text(body.get("model")),
        system=tuple(_texts(system)),
        tools=tuple(
            text(obj(t).get("name")) or text(obj(t).get("type")) or "?"
            for t in items(body.get("tools"))
        ),
        messages=tuple(_message(m) for m in items(messages)),
        stream=flag(body.get("stream")),
        max_tokens=count(body.get("max_tokens")),
        complete=complete,
    )


def _message(value: object) -> Message:
    m = obj(value)
    content = m.get("content")
    if isinstance(content, str):
        blocks: tuple[Block, ...] = (Block("text", text=content),)
    else:
        blocks = tuple(block_of(b) for b in items(content))
    return Message(text(m.get("role")) or "?", blocks)


def error_of(value: object) -> str | None:
    """`type: message` of an error body or event ({"type": "error", "error": {...}})."""
    doc = obj(value)
    if doc.get("type") != "error":
        return None
    e = obj(doc.get("error"))
    kind, message = text(e.get("type")), text(e.get("message"))
    return ": ".join(p for p in (kind, message) if p) or "error"


def read_reply(doc: object) -> Reply | None:
    """A JSON reply (a message, or an error), or None when it is neither."""
    message = obj(doc)
    error = error_of(message)
    if error is not None:
        return Reply(error=error, complete=True)
    if message.get("type") != "message" and not isinstance(message.get("content"), list):
        return None
    return Reply(
        blocks=tuple(block_of(b) for b in items(message.get("content"))),
        stop_reason=text(message.get("stop_reason")),
        usage=usage_of(message.get("usage")),
        model=text(message.get("model")),
        id=text(message.get("id")),
        complete=True,
    )


@dataclass
class _Open:
    """A content block being streamed."""

    start: Block
    parts: list[str] = field(default_factory=list)  # text, thinking, or input JSON


class Stream:
    """Folds the stream's events into a Reply; feed any events, in order."""

    def __init__(self) -> None:
        self.blocks: dict[int, _Open] = {}
        self.reply = Reply(streamed=True)
        self.known = False  # an event of this API was seen

    def event(self, event: SseEvent) -> None:
        data = obj(loads(event.data))
        kind = text(data.get("type")) or event.event
        index = count(data.get("index"))
        if kind == "message_start":
            message = obj(data.get("message"))
            self.reply = replace(
                self.reply,
                model=text(message.get("model")),
                id=text(message.get("id")),
                usage=usage_of(message.get("usage"), self.reply.usage),
            )
        elif kind == "content_block_start" and index is not None:
            self.blocks[index] = _Open(block_of(data.get("content_block")))
        elif kind == "content_block_delta" and index is not None:
            self._delta(index, obj(data.get("delta")))
        elif kind == "message_delta":
            delta = obj(data.get("delta"))
            stop = text(delta.get("stop_reason")) or self.reply.stop_reason
            usage = usage_of(data.get("usage"), self.reply.usage)
            self.reply = replace(self.reply, stop_reason=stop, usage=usage)
        elif kind == "message_stop":
            self.reply = replace(self.reply, complete=True)
        elif kind == "error":
            self.reply = replace(self.reply, error=error_of(data) or "error")
        elif kind not in ("content_block_stop", "ping"):
            return
        self.known = True

    def _delta(self, index: int, delta: dict[str, object]) -> None:
        kind = text(delta.get("type"))
        piece = {
            "text_delta": delta.get("text"),
            "thinking_delta": delta.get("thinking"),
            "input_json_delta": delta.get("partial_json"),
        }.get(kind or "")
        if not isinstance(piece, str):
            return  # signature_delta, citations_delta: nothing to show
        block = self.blocks.get(index)
        if block is None:  # a delta without its start: keep what it says
            start = Block("tool_use" if kind == "input_json_delta" else "text")
            block = self.blocks[index] = _Open(start)
        block.parts.append(piece)

    def result(self) -> Reply:
        blocks = tuple(self._block(b) for _, b in sorted(self.blocks.items()))
        return replace(self.reply, blocks=blocks)

    def _block(self, block: _Open) -> Block:
        start = block.start
        joined = "".join(block.parts)
        if start.type == "tool_use":
            if not block.parts:
                return start
            return tool_call(start.name, start.id, joined)
        if start.type in ("text", "thinking"):
            return replace(start, text=start.text + joined)
        return start


def read_stream(events: Iterable[SseEvent]) -> Reply | None:
    """The reply a stream's events make, or None when none was this API's."""
    stream = Stream()
    for event in events:
        stream.event(event)
    return stream.result() if stream.known else None
