"""OpenAI Responses API (POST .../responses; Codex CLI too): the request (`instructions`,
`input` as text or items), and the reply as a response object or as its stream of
response.* events (pure).

The stream: response.created, response.output_item.added (a message, a
function_call, a reasoning item...), response.output_text.delta /
response.function_call_arguments.delta / response.reasoning_summary_text.delta
pieces, their .done events with the whole text, response.output_item.done with
the whole item, and response.completed (or .incomplete, .failed) with the final
response and its usage. There is no [DONE].
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

_SYSTEM_ROLES = ("system", "developer")
_ENDS = ("response.completed", "response.incomplete", "response.failed")


def usage_of(value: object) -> Usage:
    u = obj(value)
    return Usage(
        input_tokens=count(u.get("input_tokens")),
        output_tokens=count(u.get("output_tokens")),
        cache_read_input_tokens=count(obj(u.get("input_tokens_details")).get("cached_tokens")),
    )


def _part(value: object) -> Block:
    if isinstance(value, str):
        return Block("text", text=value)
    p = obj(value)
    kind = text(p.get("type")) or "?"
    if kind in ("input_text", "output_text", "text", "summary_text", "reasoning_text"):
        return Block("text", text=text(p.get("text")) or "")
    if kind == "refusal":
        return Block("text", text=text(p.get("refusal")) or "")
    if kind == "input_image":
        url = text(p.get("image_url")) or ""
        return placeholder("image", {"data": url} if url.startswith("data:") else {"url": url})
    if kind == "input_file":
        return placeholder("document", {"media_type": text(p.get("filename"))})
    return Block("other", text=f"[{kind}]")


def _content(value: object) -> list[Block]:
    if isinstance(value, str):
        return [Block("text", text=value)]
    return [_part(p) for p in items(value)]


def item_blocks(value: object) -> tuple[str, list[Block]]:
    """(role, blocks) of one input or output item."""
    item = obj(value)
    kind = text(item.get("type")) or ("message" if "role" in item else "?")
    if kind == "message":
        return text(item.get("role")) or "?", _content(item.get("content"))
    if kind == "function_call":
        arguments = text(item.get("arguments")) or ""
        call_id = text(item.get("call_id")) or text(item.get("id"))
        return "assistant", [tool_call(text(item.get("name")), call_id, arguments)]
    if kind == "custom_tool_call":
        call_id = text(item.get("call_id")) or text(item.get("id"))
        return "assistant", [
            Block("tool_use", name=text(item.get("name")), id=call_id, input=item.get("input"))
        ]
    if kind in ("function_call_output", "custom_tool_call_output"):
        output = item.get("output")
        said = output if isinstance(output, str) else compact(output)
        return "tool", [Block("tool_result", text=said, id=text(item.get("call_id")))]
    if kind == "reasoning":
        parts = items(item.get("summary")) + items(item.get("content"))
        thought = "\n\n".join(b.text for b in map(_part, parts) if b.text)
        return "assistant", [Block("thinking", text=thought)]
    return "assistant", [Block("other", text=f"[{kind}]")]


def read_request(doc: object, complete: bool = True) -> Request | None:
    body = obj(doc)
    given = body.get("input")
    if not (isinstance(given, str | list) or "instructions" in body) and not (
        body and not complete
    ):
        return None
    system = [text(body.get("instructions")) or ""] if body.get("instructions") else []
    messages: list[Message] = []
    if isinstance(given, str):
        messages.append(Message("user", (Block("text", text=given),)))
    for value in items(given):
        role, blocks = item_blocks(value)
        if role in _SYSTEM_ROLES:
            system += [b.text for b in blocks]
        else:
            messages.append(Message(role, tuple(blocks)))
    tools = [text(obj(t).get("name")) or text(obj(t).get("type")) for t in items(body.get("tools"))]
    return Request(
        model=text(body.get("model")),
        system=tuple(system),
        tools=tuple(t or "?" for t in tools),
        messages=tuple(messages),
        stream=flag(body.get("stream")),
        max_tokens=count(body.get("max_output_tokens")),
        complete=complete,
    )


def error_of(value: object) -> str | None:
    doc = obj(value)
    e = obj(doc.get("error"))
    if not e and doc.get("type") != "error":
        return None
    e = e or doc
    kind = text(e.get("code")) or text(e.get("type"))
    return ": ".join(p for p in (kind, text(e.get("message"))) if p) or "error"


def _status(response: dict[str, object]) -> str | None:
    status = text(response.get("status"))
    reason = text(obj(response.get("incomplete_details")).get("reason"))
    return f"{status}: {reason}" if status and reason else status


def _output(response: dict[str, object]) -> tuple[Block, ...]:
    return tuple(b for item in items(response.get("output")) for b in item_blocks(item)[1])


def read_reply(doc: object) -> Reply | None:
    response = obj(doc)
    if response.get("object") != "response" and not isinstance(response.get("output"), list):
        error = error_of(response)
        return None if error is None else Reply(error=error, complete=True)
    return Reply(
        blocks=_output(response),
        stop_reason=_status(response),
        usage=usage_of(response.get("usage")),
        model=text(response.get("model")),
        id=text(response.get("id")),
        complete=True,
        error=error_of(response) if response.get("error") else None,
    )


@dataclass
class _Item:
    """An output item being streamed, by its output_index."""

    item: dict[str, object]
    texts: dict[int, list[str]] = field(default_factory=dict)  # by content/summary index
    arguments: list[str] = field(default_factory=list)

    def blocks(self) -> list[Block]:
        kind = text(self.item.get("type"))
        if kind == "function_call" and self.arguments:
            item = {**self.item, "arguments": "".join(self.arguments)}
            return item_blocks(item)[1]
        if kind in ("message", "reasoning") and self.texts:
            joined = ["".join(parts) for _, parts in sorted(self.texts.items())]
            if kind == "reasoning":
                return [Block("thinking", text="\n\n".join(joined))]
            return [Block("text", text=t) for t in joined]
        return item_blocks(self.item)[1]


_TEXT_DELTAS = (
    "response.output_text.delta",
    "response.refusal.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
)
_TEXT_DONES = {
    "response.output_text.done": "text",
    "response.refusal.done": "refusal",
    "response.reasoning_summary_text.done": "text",
    "response.reasoning_text.done": "text",
}


class Stream:
    def __init__(self) -> None:
        self.items: dict[int, _Item] = {}
        self.final: tuple[Block, ...] | None = None  # the output response.completed gave
        self.reply = Reply(streamed=True)
        self.known = False

    def event(self, event: SseEvent) -> None:
        data = obj(loads(event.data))
        kind = text(data.get("type")) or event.event
        if not kind.startswith("response.") and kind != "error":
            return
        self.known = True
        index = count(data.get("output_index"))
        part = count(data.get("content_index"))
        if part is None:
            part = count(data.get("summary_index")) or 0
        if kind in ("response.created", "response.in_progress") or kind in _ENDS:
            self._response(kind, obj(data.get("response")))
        elif kind == "error":
            self.reply = replace(self.reply, error=error_of(data))
        elif index is None:
            return
        elif kind in ("response.output_item.added", "response.output_item.done"):
            self.items[index] = _Item(obj(data.get("item")))
        elif kind in _TEXT_DELTAS and isinstance(piece := data.get("delta"), str):
            self._item(index).texts.setdefault(part, []).append(piece)
        elif kind in _TEXT_DONES and isinstance(whole := data.get(_TEXT_DONES[kind]), str):
            self._item(index).texts[part] = [whole]
        elif kind == "response.function_call_arguments.delta":
            self._arguments(index, data.get("delta"), whole=False)
        elif kind == "response.function_call_arguments.done":
            self._arguments(index, data.get("arguments"), whole=True)

    def _arguments(self, index: int, piece: object, whole: bool) -> None:
        if isinstance(piece, str):
            item = self._item(index, "function_call")
            if whole:
                item.arguments = [piece]
            else:
                item.arguments.append(piece)

    def _item(self, index: int, kind: str = "message") -> _Item:
        return self.items.setdefault(index, _Item({"type": kind}))

    def _response(self, kind: str, response: dict[str, object]) -> None:
        reply = replace(
            self.reply,
            model=text(response.get("model")) or self.reply.model,
            id=text(response.get("id")) or self.reply.id,
        )
        if kind in _ENDS:
            output = _output(response)
            self.final = output or self.final
            reply = replace(
                reply,
                usage=usage_of(response.get("usage")),
                stop_reason=_status(response),
                complete=True,
                error=error_of(response) if kind == "response.failed" else reply.error,
            )
        self.reply = reply

    def result(self) -> Reply:
        if self.final is not None:
            return replace(self.reply, blocks=self.final)
        blocks = [b for _, item in sorted(self.items.items()) for b in item.blocks()]
        return replace(self.reply, blocks=tuple(blocks))


def read_stream(events: Iterable[SseEvent]) -> Reply | None:
    stream = Stream()
    for event in events:
        stream.event(event)
    return stream.result() if stream.known else None
