"""OpenAI Chat Completions (POST .../chat/completions): the request, and the reply as
a chat.completion object or as its stream of chat.completion.chunk objects (pure).

A chunk's `choices[i].delta` holds pieces: `content`, `tool_calls` (each by its
`index`: the id, type and function name come once, `function.arguments` in
pieces), `finish_reason` at the end. With stream_options.include_usage a last
chunk has no choices and the usage. `data: [DONE]` ends the stream. Only choice 0
is shown (n > 1 is rare for agents).
"""

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from agentlog.conversation.model import Block, Message, Reply, Request, Usage
from agentlog.conversation.sse import SseEvent
from agentlog.conversation.values import (
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


def usage_of(value: object) -> Usage:
    u = obj(value)
    details = obj(u.get("prompt_tokens_details"))
    return Usage(
        input_tokens=count(u.get("prompt_tokens")),
        output_tokens=count(u.get("completion_tokens")),
        cache_read_input_tokens=count(details.get("cached_tokens")),
    )


def _part(value: object) -> Block:
    if isinstance(value, str):
        return Block("text", text=value)
    p = obj(value)
    kind = text(p.get("type")) or "?"
    if kind == "text":
        return Block("text", text=text(p.get("text")) or "")
    if kind == "refusal":
        return Block("text", text=text(p.get("refusal")) or "")
    if kind == "image_url":
        url = text(obj(p.get("image_url")).get("url")) or ""
        media = url[5:].partition(";")[0] if url.startswith("data:") else "url"
        source = {"media_type": media, "data": url} if url.startswith("data:") else {"url": url}
        return placeholder("image", source)
    if kind == "file":
        return placeholder("document", {"media_type": text(obj(p.get("file")).get("filename"))})
    return Block("other", text=f"[{kind}]")


def _content(value: object) -> list[Block]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Block("text", text=value)] if value else []
    return [_part(p) for p in items(value)]


def _calls(value: object) -> list[Block]:
    out = []
    for call in items(value):
        c = obj(call)
        function = obj(c.get("function"))
        arguments = text(function.get("arguments")) or ""
        out.append(tool_call(text(function.get("name")), text(c.get("id")), arguments))
    return out


def _message(value: object) -> Message:
    m = obj(value)
    role = text(m.get("role")) or "?"
    blocks = _content(m.get("content"))
    if role in ("tool", "function"):
        said = "\n".join(b.text for b in blocks)
        id = text(m.get("tool_call_id")) or text(m.get("name"))
        blocks = [Block("tool_result", text=said, id=id)]
    blocks += _calls(m.get("tool_calls"))
    legacy = obj(m.get("function_call"))
    if legacy:
        blocks += _calls([{"function": legacy}])
    return Message(role, tuple(blocks))


def read_request(doc: object, complete: bool = True) -> Request | None:
    body = obj(doc)
    messages = body.get("messages")
    if not isinstance(messages, list) and not (body and not complete):
        return None
    system: list[str] = []
    kept: list[Message] = []
    for m in items(messages):
        if text(obj(m).get("role")) in _SYSTEM_ROLES:
            system += [b.text for b in _content(obj(m).get("content"))]
        else:
            kept.append(_message(m))
    tools = [
        obj(obj(t).get("function")).get("name") or obj(t).get("type")
        for t in items(body.get("tools"))
    ]
    tools += [obj(f).get("name") for f in items(body.get("functions"))]
    return Request(
        model=text(body.get("model")),
        system=tuple(system),
        tools=tuple(text(t) or "?" for t in tools),
        messages=tuple(kept),
        stream=flag(body.get("stream")),
        max_tokens=count(body.get("max_completion_tokens")) or count(body.get("max_tokens")),
        complete=complete,
    )


def error_of(value: object) -> str | None:
    e = obj(obj(value).get("error"))
    if not e:
        return None
    kind = text(e.get("type")) or text(e.get("code"))
    return ": ".join(p for p in (kind, text(e.get("message"))) if p) or "error"


def _choice(doc: dict[str, object]) -> dict[str, object]:
    for choice in items(doc.get("choices")):
        if count(obj(choice).get("index")) in (0, None):
            return obj(choice)
    return {}


def read_reply(doc: object) -> Reply | None:
    body = obj(doc)
    error = error_of(body)
    if error is not None:
        return Reply(error=error, complete=True)
    if not isinstance(body.get("choices"), list):
        return None
    choice = _choice(body)
    message = obj(choice.get("message"))
    thinking = text(message.get("reasoning_content")) or text(message.get("reasoning"))
    blocks = [Block("thinking", text=thinking)] if thinking else []
    blocks += _content(message.get("content")) + _content(message.get("refusal"))
    blocks += _calls(message.get("tool_calls"))
    return Reply(
        blocks=tuple(blocks),
        stop_reason=text(choice.get("finish_reason")),
        usage=usage_of(body.get("usage")),
        model=text(body.get("model")),
        id=text(body.get("id")),
        complete=True,
    )


@dataclass
class _Call:
    id: str | None = None
    name: str | None = None
    arguments: list[str] = field(default_factory=list)


class Stream:
    def __init__(self) -> None:
        self.thinking: list[str] = []
        self.content: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.reply = Reply(streamed=True)
        self.known = False

    def event(self, event: SseEvent) -> None:
        if event.data.strip() == "[DONE]":
            self.reply = replace(self.reply, complete=True)
            self.known = True
            return
        chunk = obj(loads(event.data))
        error = error_of(chunk)
        if error is not None:
            self.reply = replace(self.reply, error=error)
            self.known = True
            return
        if not isinstance(chunk.get("choices"), list):
            return
        self.known = True
        model = text(chunk.get("model")) or self.reply.model
        id = text(chunk.get("id")) or self.reply.id
        usage = usage_of(chunk["usage"]) if obj(chunk.get("usage")) else self.reply.usage
        choice = _choice(chunk)
        stop = text(choice.get("finish_reason")) or self.reply.stop_reason
        self.reply = replace(self.reply, model=model, id=id, usage=usage, stop_reason=stop)
        delta = obj(choice.get("delta"))
        for name, parts in (("reasoning_content", self.thinking), ("reasoning", self.thinking)):
            if isinstance(piece := delta.get(name), str):
                parts.append(piece)
        for name in ("content", "refusal"):
            if isinstance(piece := delta.get(name), str):
                self.content.append(piece)
        for position, value in enumerate(items(delta.get("tool_calls"))):
            c = obj(value)
            index = count(c.get("index"))
            call = self.calls.setdefault(position if index is None else index, _Call())
            function = obj(c.get("function"))
            call.id = text(c.get("id")) or call.id
            call.name = text(function.get("name")) or call.name
            if isinstance(piece := function.get("arguments"), str):
                call.arguments.append(piece)

    def result(self) -> Reply:
        blocks = [Block("thinking", text="".join(self.thinking))] if self.thinking else []
        if self.content:
            blocks.append(Block("text", text="".join(self.content)))
        for _, call in sorted(self.calls.items()):
            blocks.append(tool_call(call.name, call.id, "".join(call.arguments)))
        return replace(self.reply, blocks=tuple(blocks))


def read_stream(events: Iterable[SseEvent]) -> Reply | None:
    stream = Stream()
    for event in events:
        stream.event(event)
    return stream.result() if stream.known else None
