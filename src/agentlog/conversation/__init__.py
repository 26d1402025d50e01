"""Model API calls read as conversations: Anthropic Messages, OpenAI Chat Completions and
Responses, requests and replies (JSON or SSE streams reassembled), and per-session
summaries (pure). `formats.conversation` reads the stored bodies for it."""

from agentlog.conversation.model import (
    Api,
    Block,
    Conversation,
    Message,
    Reply,
    Request,
    Usage,
)
from agentlog.conversation.reader import api_of, read_conversation

__all__ = [
    "Api",
    "Block",
    "Conversation",
    "Message",
    "Reply",
    "Request",
    "Usage",
    "api_of",
    "read_conversation",
]
