"""What a model API call says, whatever API it was: the values the readers build (pure).

Everything here is agent- or model-controlled text: show it as text, never as markup.
"""

from dataclasses import dataclass, field
from typing import Literal

# The APIs read: Anthropic Messages, OpenAI Chat Completions, OpenAI Responses.
Api = Literal["anthropic.messages", "openai.chat", "openai.responses"]


@dataclass(frozen=True)
class Block:
    """One piece of a message: text, thinking, a tool call or its result, a placeholder."""

    type: str  # text, thinking, redacted_thinking, tool_use, tool_result, image, document, other
    text: str = ""  # the text; a tool result's text; a placeholder's description
    name: str | None = None  # tool_use: the tool
    id: str | None = None  # tool_use: its id; tool_result: the tool_use it answers
    input: object = None  # tool_use: its input (JSON), rebuilt from fragments when streamed
    partial: bool = False  # tool_use: its input JSON was cut short (what was read is shown)
    is_error: bool = False  # tool_result: the tool failed


@dataclass(frozen=True)
class Message:
    role: str
    blocks: tuple[Block, ...]


@dataclass(frozen=True)
class Usage:
    """Token counts as the API reported them (None: not reported). OpenAI counts cached
    input tokens within `input_tokens`; Anthropic counts them apart."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


@dataclass(frozen=True)
class Reply:
    """The model's answer: a JSON message, or the stream reassembled."""

    blocks: tuple[Block, ...] = ()
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    id: str | None = None
    streamed: bool = False
    complete: bool = False  # the whole answer was read (a stream's end event seen)
    error: str | None = None  # an error answer or stream event: "type: message"


@dataclass(frozen=True)
class Request:
    """What was asked: the model, the system prompt, the tools offered, the messages."""

    model: str | None = None
    system: tuple[str, ...] = ()
    tools: tuple[str, ...] = ()  # names of the tools offered
    messages: tuple[Message, ...] = ()
    stream: bool = False
    max_tokens: int | None = None
    complete: bool = True  # False: the body was cut and only its start was read


@dataclass(frozen=True)
class Conversation:
    """One model API call: what was asked, what came back, and what could not be read."""

    api: Api
    request: Request
    reply: Reply | None
    notes: tuple[str, ...] = ()  # why a part is missing or cut short
