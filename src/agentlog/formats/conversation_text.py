"""Conversations and session summaries as terminal lines (`agentlog show --conversation`,
`agentlog sessions`). Every line goes through `printable`: model and agent text never
drives the terminal."""

import json
from collections.abc import Iterable, Iterator

from agentlog.conversation import Block, Conversation, Usage
from agentlog.conversation.session import SessionSummary, Totals, Turn
from agentlog.formats.text import printable

INDENT = "    "


def _text_lines(text: str, indent: str) -> Iterator[str]:
    for line in text.split("\n"):
        yield printable(indent + line)


def usage_text(usage: Usage) -> str:
    parts = [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache write", usage.cache_creation_input_tokens),
        ("cache read", usage.cache_read_input_tokens),
    ]
    shown = [f"{name} {n:,}" for name, n in parts if n is not None]
    return ", ".join(shown) if shown else "not reported"


def _block_lines(block: Block, indent: str) -> Iterator[str]:
    deeper = indent + INDENT
    if block.type == "text":
        yield from _text_lines(block.text, indent)
    elif block.type == "tool_use":
        partial = " (input cut short)" if block.partial else ""
        head = f"{indent}[tool call] {block.name or '?'} {block.id or ''}{partial}"
        yield printable(head.rstrip())
        shown = json.dumps(block.input, indent=2, ensure_ascii=False)
        yield from _text_lines(shown, deeper)
        if block.partial and block.text:
            yield printable(f"{deeper}(as received: {block.text})")
    elif block.type == "tool_result":
        failed = " (error)" if block.is_error else ""
        yield printable(f"{indent}[tool result] {block.id or ''}{failed}".rstrip())
        yield from _text_lines(block.text, deeper)
    elif block.type == "thinking":
        yield printable(f"{indent}[thinking]")
        yield from _text_lines(block.text, deeper)
    elif block.type == "redacted_thinking":
        yield printable(f"{indent}[redacted thinking]")
    else:
        yield printable(f"{indent}{block.text or '[' + block.type + ']'}")


def conversation_lines(conversation: Conversation, head: str = "") -> Iterator[str]:
    request, reply = conversation.request, conversation.reply
    if head:
        yield printable(head)
    facts = [f"api {conversation.api}", f"model {request.model or '?'}"]
    facts.append("streamed" if request.stream else "not streamed")
    if request.max_tokens is not None:
        facts.append(f"max tokens {request.max_tokens:,}")
    yield printable("  ".join(facts))
    if request.tools:
        yield printable(f"tools offered ({len(request.tools)}): {', '.join(request.tools)}")
    for note in conversation.notes:
        yield printable(f"note: {note}")
    if request.system:
        yield ""
        yield "-- system"
        for text in request.system:
            yield from _text_lines(text, INDENT)
    for message in request.messages:
        yield ""
        yield printable(f"-- {message.role}")
        for block in message.blocks:
            yield from _block_lines(block, INDENT)
    yield ""
    if reply is None:
        yield "== no reply"
        return
    state = "complete" if reply.complete else "incomplete"
    model = f", {reply.model}" if reply.model and reply.model != request.model else ""
    yield printable(f"== reply ({state}{model})")
    for block in reply.blocks:
        yield from _block_lines(block, INDENT)
    if reply.error:
        yield printable(f"error: {reply.error}")
    yield printable(f"stop reason: {reply.stop_reason or '-'}")
    yield printable(f"usage: {usage_text(reply.usage)}")


def totals_text(totals: Totals) -> str:
    return (
        f"{totals.requests:,} model call(s), tokens: input {totals.input_tokens:,},"
        f" output {totals.output_tokens:,}, cache write {totals.cache_creation_input_tokens:,},"
        f" cache read {totals.cache_read_input_tokens:,}; {totals.tool_calls:,} tool call(s)"
        + (f"; {totals.errors:,} failed or incomplete" if totals.errors else "")
    )


def _short(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _turn_lines(number: int, turn: Turn) -> Iterator[str]:
    status = "-" if turn.status is None else str(turn.status)
    yield printable(
        f"{number:>4}  {turn.timestamp}  {turn.id}  {status}  {turn.model or '?'}"
        f"  {turn.stop_reason or '-'}  {usage_text(turn.usage)}"
    )
    if turn.prompt:
        yield printable(f"{INDENT}  prompt: {_short(turn.prompt)}")
    if turn.tool_results:
        yield printable(f"{INDENT}  tool results sent: {turn.tool_results}")
    if turn.reply:
        yield printable(f"{INDENT}  reply: {_short(turn.reply)}")
    for call in turn.tool_calls:
        yield printable(f"{INDENT}  tool call: {call.name} {_short(call.input, 120)}")
    if turn.error:
        yield printable(f"{INDENT}  error: {turn.error}")
    elif not turn.complete:
        yield printable(f"{INDENT}  reply incomplete")


def session_lines(summary: SessionSummary, exchanges: int) -> Iterator[str]:
    yield printable(f"session {summary.session}: {exchanges:,} exchange(s)")
    yield printable(totals_text(summary.totals))
    if summary.tools:
        yield printable("tools used: " + ", ".join(f"{t.name} {t.calls}" for t in summary.tools))
    if summary.models:
        yield printable("models: " + ", ".join(summary.models))
    for number, turn in enumerate(summary.turns, 1):
        yield from _turn_lines(number, turn)


def sessions_table(rows: Iterable[tuple[SessionSummary, int, str]]) -> Iterator[str]:
    """One line per session: (summary, exchanges, first seen)."""
    yield (
        f"{'SESSION':<28} {'FIRST SEEN':<28} {'EXCH':>6} {'CALLS':>6} {'INPUT':>10}"
        f" {'OUTPUT':>9} {'CACHE W':>10} {'CACHE R':>11} {'TOOLS':>6}"
    )
    for summary, exchanges, first in rows:
        t = summary.totals
        yield printable(
            f"{summary.session:<28} {first:<28} {exchanges:>6} {t.requests:>6}"
            f" {t.input_tokens:>10,} {t.output_tokens:>9,} {t.cache_creation_input_tokens:>10,}"
            f" {t.cache_read_input_tokens:>11,} {t.tool_calls:>6}"
        )
