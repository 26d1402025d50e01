"""The conversation view's data (docs/ui-api.md): one exchange's conversation, and a
session's model calls as turns with their totals. Read from the stored bodies,
through formats.conversation, and kept per exchange (bodies never change under a ref).
"""

import threading
from collections import OrderedDict
from dataclasses import asdict
from typing import Any

from pydantic import BaseModel

from agentlog.conversation.model import Api
from agentlog.conversation.session import Turn, summarize
from agentlog.formats.conversation import exchange_conversation, exchange_turn, is_candidate
from agentlog.ui.store import Store

# -- the API's schemas ---------------------------------------------------------------


class ConversationBlock(BaseModel):
    type: str
    text: str
    name: str | None
    id: str | None
    input: Any
    partial: bool
    is_error: bool


class ConversationMessage(BaseModel):
    role: str
    blocks: list[ConversationBlock]


class TokenUsage(BaseModel):
    input_tokens: int | None
    output_tokens: int | None
    cache_creation_input_tokens: int | None
    cache_read_input_tokens: int | None


class ConversationRequest(BaseModel):
    model: str | None
    system: list[str]
    tools: list[str]
    messages: list[ConversationMessage]
    stream: bool
    max_tokens: int | None
    complete: bool


class ConversationReply(BaseModel):
    blocks: list[ConversationBlock]
    stop_reason: str | None
    usage: TokenUsage
    model: str | None
    id: str | None
    streamed: bool
    complete: bool
    error: str | None


class Conversation(BaseModel):
    id: str
    session: str
    api: Api
    request: ConversationRequest
    reply: ConversationReply | None
    notes: list[str]


class ToolCall(BaseModel):
    name: str
    id: str | None
    input: str


class ConversationTurn(BaseModel):
    id: str
    timestamp: str
    api: Api
    model: str | None
    status: int | None
    prompt: str
    tool_results: int
    reply: str
    tool_calls: list[ToolCall]
    stop_reason: str | None
    usage: TokenUsage
    complete: bool
    error: str | None
    notes: list[str]


class SessionTotals(BaseModel):
    requests: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    tool_calls: int
    errors: int


class ToolCount(BaseModel):
    name: str
    calls: int


class SessionConversation(BaseModel):
    session: str
    exchanges: int
    turns: list[ConversationTurn]
    totals: SessionTotals
    tools: list[ToolCount]
    models: list[str]


# -- reading -------------------------------------------------------------------------

# Model calls by path, before any body is read (formats.conversation decides exactly).
_CANDIDATES = (
    "SELECT id FROM exchanges WHERE session = ? AND method = 'POST'"
    " AND (path LIKE '%/messages%' OR path LIKE '%/completions%' OR path LIKE '%/responses%')"
    " ORDER BY seq"
)
CACHE_TURNS = 5_000  # turns of up to ~4 KiB of text each


def _key(exchange: dict) -> tuple[object, ...]:
    """What a turn depends on: the bodies' refs and how the exchange ended."""
    response = exchange.get("response")
    response = response if isinstance(response, dict) else {}
    return (
        exchange.get("id"),
        exchange.get("request_body"),
        response.get("response_body"),
        response.get("status"),
        tuple(k for k in ("response", "error", "blocked") if k in exchange),
    )


class Conversations:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._turns: OrderedDict[tuple[object, ...], Turn | None] = OrderedDict()
        self._lock = threading.Lock()

    def exchange(self, id: str) -> dict | None:
        """An exchange's conversation (None: no such exchange, or not a model call)."""
        found = self.store.exchange(id)
        if found is None:
            return None
        row, exchange = found
        conversation = exchange_conversation(self.store.logs.root, exchange)
        if conversation is None:
            return None
        return {"id": row["id"], "session": row["session"], **asdict(conversation)}

    def _turn(self, exchange: dict) -> Turn | None:
        key = _key(exchange)
        with self._lock:
            if key in self._turns:
                self._turns.move_to_end(key)
                return self._turns[key]
        turn = exchange_turn(self.store.logs.root, exchange)
        with self._lock:
            self._turns[key] = turn
            while len(self._turns) > CACHE_TURNS:
                self._turns.popitem(last=False)
        return turn

    def session(self, session: str) -> dict | None:
        """The session's model calls as turns, with totals (None: no such session)."""
        db = self.store.db()
        exchanges = db.execute(
            "SELECT count(*) FROM exchanges WHERE session = ?", (session,)
        ).fetchone()[0]
        if not exchanges:
            return None
        turns = []
        for (id,) in db.execute(_CANDIDATES, (session,)).fetchall():
            found = self.store.exchange(id)
            if found is not None and is_candidate(found[1]):
                turn = self._turn(found[1])
                if turn is not None:
                    turns.append(turn)
        return {"exchanges": exchanges, **asdict(summarize(session, turns))}
