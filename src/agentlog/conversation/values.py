"""Reading parsed JSON of any shape without trusting it (pure): a wrong type reads as
nothing, so hostile or unexpected bodies never raise."""

import json

from agentlog.conversation.model import Block
from agentlog.conversation.partial_json import parse_prefix


def obj(value: object) -> dict[str, object]:
    return value if isinstance(value, dict) else {}


def items(value: object) -> list[object]:
    return value if isinstance(value, list) else []


def text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def count(value: object) -> int | None:
    """A token count: a non-negative integer (not a bool), else None."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return None


def flag(value: object) -> bool:
    return value is True


def loads(data: str) -> object:
    """Whole, strict JSON text no deeper than partial_json.MAX_DEPTH, or None."""
    value, whole = parse_prefix(data)
    return value if whole else None


def compact(value: object) -> str:
    """JSON as one line, for a placeholder or a preview."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        return str(value)


def tool_call(name: str | None, id: str | None, arguments: str, done: bool = True) -> Block:
    """A tool call whose input came as JSON text (OpenAI's `arguments`, Anthropic's
    streamed fragments). Input that does not parse whole is read as far as it goes
    (`partial`); its text is kept in `text` so nothing read is hidden."""
    if not arguments.strip():
        return Block("tool_use", name=name, id=id, input={}, partial=not done)
    value, whole = parse_prefix(arguments)
    if whole:
        return Block("tool_use", name=name, id=id, input=value)
    return Block("tool_use", text=arguments, name=name, id=id, input=value, partial=True)


def size_text(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"


def placeholder(kind: str, source: object) -> Block:
    """An image or document as a line saying what it was (its bytes are not shown)."""
    src = obj(source)
    media = text(src.get("media_type")) or text(src.get("type")) or "unknown type"
    data = text(src.get("data"))
    url = text(src.get("url"))
    if data is not None:
        detail = f"{media}, {size_text(len(data) * 3 // 4)}"
    elif url is not None:
        detail = f"{media}: {url[:200]}"
    else:
        detail = media
    return Block(kind, text=f"[{kind}: {detail}]")
