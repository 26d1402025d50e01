"""A session's model calls as turns in order, and their totals (pure)."""

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from agentlog.conversation.model import Api, Block, Conversation, Usage
from agentlog.conversation.values import compact

TEXT_CAP = 2000  # of a turn's prompt and reply text (the exchange's view has it all)
INPUT_CAP = 500  # of a tool call's input, as one line of JSON


@dataclass(frozen=True)
class ToolCall:
    name: str
    id: str | None
    input: str  # compact JSON, cut at INPUT_CAP


@dataclass(frozen=True)
class Turn:
    """One model call of the session."""

    id: str  # the exchange's id
    timestamp: str
    api: Api
    model: str | None
    status: int | None  # HTTP status; None without a response
    prompt: str  # the text of the last user message (no system reminders), cut at TEXT_CAP
    tool_results: int  # tool results the last user message carried back
    reply: str  # the reply's text, cut at TEXT_CAP
    tool_calls: tuple[ToolCall, ...]
    stop_reason: str | None
    usage: Usage
    complete: bool  # the whole reply was read
    error: str | None
    notes: tuple[str, ...]


@dataclass(frozen=True)
class ToolCount:
    name: str
    calls: int


@dataclass(frozen=True)
class Totals:
    requests: int  # model calls
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    tool_calls: int
    errors: int  # calls without a whole, successful reply


@dataclass(frozen=True)
class SessionSummary:
    session: str
    turns: tuple[Turn, ...]
    totals: Totals
    tools: tuple[ToolCount, ...]  # most used first
    models: tuple[str, ...]  # in order of first use


def _cut(text: str, cap: int) -> str:
    return text if len(text) <= cap else text[:cap] + f"… ({len(text) - cap:,} more characters)"


# Claude Code adds context to a user message as text blocks of their own.
_REMINDER = re.compile(r"\s*<system-reminder>.*</system-reminder>\s*", re.DOTALL)


def _texts(blocks: Iterable[Block]) -> str:
    return "\n\n".join(b.text for b in blocks if b.type == "text" and b.text)


def _prompt(blocks: tuple[Block, ...]) -> str:
    """What the user said: the text blocks, those that are only a system reminder
    left out (unless there is nothing else)."""
    said = [b for b in blocks if b.type == "text" and not _REMINDER.fullmatch(b.text)]
    return _texts(said) or _texts(blocks)


def turn_of(id: str, timestamp: str, status: int | None, conversation: Conversation) -> Turn:
    request, reply = conversation.request, conversation.reply
    users = [m for m in request.messages if m.role == "user"]
    last = users[-1].blocks if users else ()
    calls = tuple(
        ToolCall(b.name or "?", b.id, _cut(compact(b.input), INPUT_CAP))
        for b in (reply.blocks if reply else ())
        if b.type == "tool_use"
    )
    return Turn(
        id=id,
        timestamp=timestamp,
        api=conversation.api,
        model=(reply.model if reply else None) or request.model,
        status=status,
        prompt=_cut(_prompt(last), TEXT_CAP),
        tool_results=sum(b.type == "tool_result" for b in last),
        reply=_cut(_texts(reply.blocks), TEXT_CAP) if reply else "",
        tool_calls=calls,
        stop_reason=reply.stop_reason if reply else None,
        usage=reply.usage if reply else Usage(),
        complete=reply is not None and reply.complete,
        error=reply.error if reply else None,
        notes=conversation.notes,
    )


def _sum(turns: tuple[Turn, ...], name: str) -> int:
    return sum(getattr(t.usage, name) or 0 for t in turns)


def summarize(session: str, turns: Iterable[Turn]) -> SessionSummary:
    """Totals over `turns`, kept in the order given (the journal's)."""
    kept = tuple(turns)
    used = Counter(c.name for t in kept for c in t.tool_calls)
    models: dict[str, None] = {}
    for t in kept:
        if t.model:
            models.setdefault(t.model)
    totals = Totals(
        requests=len(kept),
        input_tokens=_sum(kept, "input_tokens"),
        output_tokens=_sum(kept, "output_tokens"),
        cache_creation_input_tokens=_sum(kept, "cache_creation_input_tokens"),
        cache_read_input_tokens=_sum(kept, "cache_read_input_tokens"),
        tool_calls=sum(len(t.tool_calls) for t in kept),
        errors=sum(t.error is not None or not t.complete for t in kept),
    )
    tools = tuple(
        ToolCount(name, n) for name, n in sorted(used.items(), key=lambda kv: (-kv[1], kv[0]))
    )
    return SessionSummary(session, kept, totals, tools, tuple(models))
