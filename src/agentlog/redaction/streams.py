"""Secrets split across the events of a stream (pure).

A streamed model reply (Server-Sent Events) carries its text in pieces, one per
event: Anthropic's `delta.text` / `delta.partial_json`, OpenAI Chat's
`choices[].delta.content` and `...tool_calls[].function.arguments`, OpenAI
Responses' `delta`. A secret the model echoes may be split across events, whole
in none of them, so redacting event by event misses it. Here the strings of each
`data:` line's JSON are joined per stream - the same JSON path, with the list
positions and the `index`-like fields (`index`, `output_index`, ...) along it and
the event's `type` - and the joined text is searched with the same finders as
any text. Each secret found is masked once, in the piece where it starts; its
parts in the following pieces are removed, so the reassembled reply reads as if
the whole text had been redacted. Only the edited string literals change: every
other byte of the body, and every event that holds no part of a secret, stays
as it was.

A line that is not JSON is not part of any stream. The last line may be cut by
the body cap: it is read as far as it goes. A body that does not end with the
last event of a whole stream may have been cut inside a secret, in the stream of
its last event or of the one before: a secret running to the end of those is
masked from its start.
"""

import bisect
import json
import re
from collections.abc import Callable
from dataclasses import dataclass

from agentlog.redaction.text import Span, secrets_in_text

# A data line: at the start of the text or of a line (CRLF, LF or CR endings).
_DATA_LINE = re.compile(r"(?<![^\r\n])data: ?([^\r\n]*)")
# A body with no event-stream content type is a stream if it starts as one.
_SSE_START = re.compile(r"\ufeff?(?:data|event|id|retry)?:")
# Fields that tell one stream from another within an event shape.
_INDEX_KEYS = frozenset({"index", "output_index", "content_index", "summary_index"})
# Streams searched as cut short, at most: the latest ones (a real stream's last two
# events hold a handful).
_MAX_CUT_STREAMS = 64
# Between the streams searched together.
_SEPARATOR = ' "\n\n'
# Pieces of real streams sit a few levels deep (choices[0].delta.tool_calls[0]...).
_MAX_DEPTH = 16
# One JSON string literal of a line (the last one may be cut short).
_LITERAL = re.compile(r'"((?:[^"\\]|\\.)*+)"?')
# One character of a literal as written: an escape (a surrogate pair is one
# character once read) or a character standing for itself.
_UNIT = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|\\u[0-9a-fA-F]{4}|\\[^u]|[^\\]"
)

# The last event of a whole stream (Anthropic, OpenAI Chat, OpenAI Responses), and
# the blank line that ends it.
_ENDS = frozenset(
    {
        *("message_stop", "[DONE]", "error"),
        *("response.completed", "response.incomplete", "response.failed"),
    }
)
_BLANK_LINE_END = re.compile(r"(?:\r\n|\r|\n){2}\Z")

Key = tuple[object, ...]
# A literal's text as read, and the (start, end, replacement) cuts to make in it.
_Edits = tuple[str, list[tuple[int, int, str]]]


class _Object(list[tuple[str, object]]):
    """A JSON object's pairs in source order, repeated keys kept: one entry per
    string literal, so the strings line up with the literals of the line."""


_DECODER = json.JSONDecoder(object_pairs_hook=_Object)


@dataclass(slots=True)
class _Piece:
    line: int  # which data line
    literal: int  # which string literal of that line
    text: str  # the string as read
    start: int = 0  # where it starts in the stream's joined text


def is_stream(text: str, content_type: str) -> bool:
    """Whether a body is (or starts as) Server-Sent Events."""
    if "event-stream" in content_type:
        return True
    return "json" not in content_type and _SSE_START.match(text) is not None


def redact(text: str, known: set[str], mask: Callable[[str], str]) -> str:
    """Mask the secrets that the joined pieces of each stream hold. Values caught
    by name are added to `known`."""
    lines = list(_DATA_LINE.finditer(text))
    if not lines:
        return text
    last = len(lines) - 1
    streams: dict[Key, list[_Piece]] = {}
    end_type: object = None
    for n, line in enumerate(lines):
        doc = _read(line.group(1), cut=n == last and line.end() == len(text))
        if n == last:
            end_type = line.group(1).strip() if doc is None else _type(doc)
        if doc is None:
            continue
        for i, key, piece in _strings(doc):
            streams.setdefault(key, []).append(_Piece(n, i, piece))
    # A body cut by the cap may end inside a secret, in a stream of its last event
    # or of the one before (the cut fell in the head of the next piece).
    ended = isinstance(end_type, str) and end_type in _ENDS
    cut = not ended or _BLANK_LINE_END.search(text) is None
    at_cut = [p for p in streams.values() if cut and p[-1].line >= last - 1]
    at_cut = sorted(at_cut, key=lambda p: (p[-1].line, p[-1].literal))[-_MAX_CUT_STREAMS:]
    cut_ids = {id(p) for p in at_cut}
    whole = [p for p in streams.values() if id(p) not in cut_ids and _varies(p)]
    edits: dict[int, dict[int, _Edits]] = {}
    _search(whole, False, known, mask, edits)
    for pieces in at_cut:
        _search([pieces], True, known, mask, edits)
    if not edits:
        return text
    out, pos = [], 0
    for n, changes in sorted(edits.items()):
        start, end = lines[n].span(1)
        out += [text[pos:start], _edit_line(text[start:end], changes)]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _varies(pieces: list[_Piece]) -> bool:
    """Whether a stream's pieces are not all the same: the same string in every
    event (an id, the model's name) is a field repeated, not text in pieces."""
    first = pieces[0].text
    return any(p.text != first for p in pieces)


# -- reading the lines -------------------------------------------------------------


def _read(value: str, cut: bool) -> object | None:
    """A data line's JSON (objects as _Object), or None. A line cut short is read
    as far as it goes."""
    if value[:1] not in ("{", "["):
        return None
    try:
        return _DECODER.decode(value)
    except (ValueError, RecursionError):
        pass
    if not cut:
        return None
    # Imported here: agentlog.conversation imports agentlog.redact, which imports this.
    from agentlog.conversation.partial_json import parse_prefix

    doc, _ = parse_prefix(value)
    return doc


def _type(doc: object) -> object:
    """An event's `type` (what the last one is tells whether the stream ended)."""
    pairs = doc if isinstance(doc, _Object) else doc.items() if isinstance(doc, dict) else ()
    return next((v for k, v in pairs if k == "type"), None)


def _strings(doc: object) -> list[tuple[int, Key, str]]:
    """(which literal of the line, the stream, the text) of each string that may be
    a piece, in source order. Keys, the fields that name a stream (`type`,
    `index`...) and strings nested deeper than any stream's pieces are only counted."""
    out: list[tuple[int, Key, str]] = []
    _walk(doc, (), 0, out)
    return out


def _walk(node: object, path: Key, n: int, out: list[tuple[int, Key, str]]) -> int:
    """Collect the strings of `node`, the n-th literal on; return the next literal's number."""
    if type(node) is str:
        if node:
            out.append((n, path, node))
        return n + 1
    pairs = _pairs(node)
    if pairs is not None:
        if len(path) >= _MAX_DEPTH:
            return n + _count(node)
        marks: tuple[tuple[str, object], ...] = tuple(
            (k, v) for k, v in pairs if k in _INDEX_KEYS and type(v) is int
        )
        if not path:  # the event's type tells the streams of one path apart
            marks += tuple(("type", v) for k, v in pairs if k == "type" and type(v) is str)
        here = (*path, marks) if marks else path
        for k, v in pairs:
            n += 1  # the key
            if type(v) is str:  # inline: most values are strings or numbers
                if v and not (k in _INDEX_KEYS or (not path and k == "type")):
                    out.append((n, (*here, k), v))
                n += 1
            elif type(v) in _CONTAINERS:
                n = _walk(v, (*here, k), n, out)
        return n
    if type(node) is list:
        if len(path) >= _MAX_DEPTH:
            return n + _count(node)
        for i, item in enumerate(node):
            n = _walk(item, (*path, _position(item, i)), n, out)
    return n


_CONTAINERS = (_Object, dict, list)


def _pairs(node: object) -> list[tuple[str, object]] | None:
    if type(node) is _Object:
        return node
    if type(node) is dict:  # a line cut short, read by parse_prefix
        return list(node.items())
    return None


def _count(node: object) -> int:
    """How many string literals (keys too) a value is written with."""
    n, stack = 0, [node]
    while stack:
        item = stack.pop()
        if type(item) is str:
            n += 1
        elif (pairs := _pairs(item)) is not None:
            n += len(pairs)
            stack.extend(v for _, v in pairs)
        elif type(item) is list:
            stack.extend(item)
    return n


def _position(item: object, i: int) -> object:
    """A list item's place: its `index` field if it has one (a tool call's pieces
    come at position 0 of each event's list), else its position."""
    pairs = _pairs(item)
    if pairs is not None and any(k == "index" and type(v) is int for k, v in pairs):
        return "[]"
    return i


# -- finding and masking -----------------------------------------------------------


def _search(
    streams: list[list[_Piece]],
    cut: bool,
    known: set[str],
    mask: Callable[[str], str],
    edits: dict[int, dict[int, _Edits]],
) -> None:
    """Find the secrets in the joined text of each stream, all in one search: the
    separator holds a line break, which no finder reads across, and a quote, which
    ends a JSON string a stream left open. Without `cut`, a stream ends where its
    text ends, not inside a secret: the separator after it says so too."""
    if not streams:
        return
    texts = ["".join(p.text for p in pieces) for pieces in streams]
    for pieces in streams:
        pos = 0
        for piece in pieces:
            piece.start, pos = pos, pos + len(piece.text)
    searched = _SEPARATOR.join(texts) + ("" if cut else _SEPARATOR)
    starts, pos = [], 0
    for joined in texts:
        starts.append(pos)
        pos += len(joined) + len(_SEPARATOR)
    found: set[str] = set()
    spans = _merged(secrets_in_text(searched, found, known, cut=cut))
    known |= found
    for start, end in spans:
        first = bisect.bisect_right(starts, start) - 1
        for s in range(max(first, 0), len(streams)):
            offset = starts[s]
            if offset >= end:
                break
            lo, hi = max(start - offset, 0), min(end - offset, len(texts[s]))
            if lo < hi:
                _mask_span(streams[s], texts[s], lo, hi, mask, edits)


def _mask_span(
    pieces: list[_Piece],
    joined: str,
    start: int,
    end: int,
    mask: Callable[[str], str],
    edits: dict[int, dict[int, _Edits]],
) -> None:
    """The mask in the piece where the secret starts; the rest of it removed."""
    replacement = mask(joined[start:end])
    first = bisect.bisect_right(pieces, start, key=lambda p: p.start) - 1
    for k in range(max(first, 0), len(pieces)):
        piece = pieces[k]
        if piece.start >= end:
            break
        lo, hi = max(start, piece.start), min(end, piece.start + len(piece.text))
        if lo < hi:
            line = edits.setdefault(piece.line, {})
            line.setdefault(piece.literal, (piece.text, []))[1].append(
                (lo - piece.start, hi - piece.start, replacement)
            )
            replacement = ""  # the rest of the secret: removed


def _merged(spans: list[Span]) -> list[Span]:
    out: list[list[int]] = []
    for start, end in sorted(spans):
        if end <= start:
            continue
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def _edit_line(value: str, changes: dict[int, _Edits]) -> str:
    """The data line with the changed characters of its literals replaced; the
    rest of each literal (its escapes too) is kept as written."""
    literals = list(_LITERAL.finditer(value))
    out, pos = [], 0
    for i, (text, cuts) in sorted(changes.items()):
        literal = _literal_of(literals, i, text)
        if literal is None or literal.start() < pos:
            continue
        start, end = literal.span(1)
        out += [value[pos:start], _edit_literal(literal.group(1), cuts)]
        pos = end
    out.append(value[pos:])
    return "".join(out)


def _literal_of(literals: list[re.Match[str]], i: int, text: str) -> re.Match[str] | None:
    """The i-th literal, which reads as `text`. A line cut short (read by
    parse_prefix, which keeps the last of repeated keys) may be out of step:
    then the first later literal that reads as `text`; and its last literal may
    read one character more or less (an escape cut in two)."""
    for k in range(i, len(literals)):
        read = _read_literal(literals[k].group(1))
        if read == text:
            return literals[k]
        if k == len(literals) - 1 and read is not None and _one_prefixes(read, text):
            return literals[k]
    return None


def _one_prefixes(a: str, b: str) -> bool:
    return a.startswith(b) or b.startswith(a)


def _read_literal(raw: str) -> str | None:
    end = _units(raw)[-1]
    try:
        return json.loads(f'"{raw[:end]}"')
    except ValueError:
        return None


def _units(raw: str) -> list[int]:
    """Where each character of a literal starts as written, and where the last ends
    (before a cut escape)."""
    offsets, pos = [], 0
    while (unit := _UNIT.match(raw, pos)) is not None:
        offsets.append(pos)
        pos = unit.end()
    offsets.append(pos)
    return offsets


def _edit_literal(raw: str, cuts: list[tuple[int, int, str]]) -> str:
    offsets = _units(raw)
    out, at = [], 0
    for start, end, replacement in sorted(cuts):
        start, end = min(start, len(offsets) - 1), min(end, len(offsets) - 1)
        out += [raw[at : offsets[start]], json.dumps(replacement, ensure_ascii=False)[1:-1]]
        # A cut that runs to the end of what was read takes a cut escape with it.
        at = len(raw) if end == len(offsets) - 1 else offsets[end]
    out.append(raw[at:])
    return "".join(out)
