"""A secret a model streams back split across events (the pieces of one text, one
tool input) is masked in the stored body, and nothing else of the body changes.

The streams are built as the three APIs send them (Anthropic Messages, OpenAI Chat
Completions and Responses) and read back with `agentlog.conversation`'s own
stream readers, without the re-redaction the conversation view adds: what a reader
of the stored body could join is what is checked.
"""

from __future__ import annotations

import json
import string
from collections.abc import Callable
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentlog.conversation import anthropic, openai_chat, openai_responses
from agentlog.conversation.model import Reply
from agentlog.conversation.sse import parse_all
from agentlog.redact import Redactor
from tests.secret_samples import Secret, tokens

R = Redactor()
KEY = "sk-ant-api03-" + "abcDEF123_-" * 8 + "xyzAB" + "AA"
Dumps = Callable[[object], str]


# -- the three APIs' streams ---------------------------------------------------------


@dataclass(frozen=True)
class Kind:
    """One way a model streams text: `build(pieces, dumps)` makes the body, one event
    per piece; `reader` reads it back. A tool input's pieces are JSON text."""

    name: str
    build: Callable[[list[str], Dumps], str]
    reader: Callable[..., Reply | None]
    json_input: bool = False


def _anthropic(block: dict, delta: Callable[[str], dict]) -> Callable[[list[str], Dumps], str]:
    def build(pieces: list[str], dumps: Dumps) -> str:
        message = {"id": "msg_01", "type": "message", "role": "assistant", "content": []}
        events: list[dict] = [
            {"type": "message_start", "message": {**message, "model": "claude-sonnet-4-5"}},
            {"type": "content_block_start", "index": 0, "content_block": block},
            *({"type": "content_block_delta", "index": 0, "delta": delta(p)} for p in pieces),
            {"type": "content_block_stop", "index": 0},
            {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {}},
            {"type": "message_stop"},
        ]
        return "".join(f"event: {e['type']}\ndata: {dumps(e)}\n\n" for e in events)

    return build


def _chat(tool: bool) -> Callable[[list[str], Dumps], str]:
    def chunk(delta: dict) -> dict:
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
        }

    def call(piece: str, first: bool = False) -> dict:
        head = {"id": "call_1", "type": "function"} if first else {}
        function = {"name": "run", "arguments": piece} if first else {"arguments": piece}
        return {"tool_calls": [{"index": 0, **head, "function": function}]}

    def build(pieces: list[str], dumps: Dumps) -> str:
        if tool:
            chunks = [chunk(call("", first=True)), *(chunk(call(p)) for p in pieces)]
        else:
            chunks = [chunk({"role": "assistant", "content": ""})]
            chunks += [chunk({"content": p}) for p in pieces]
        return "".join(f"data: {dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"

    return build


def _responses(tool: bool) -> Callable[[list[str], Dumps], str]:
    def build(pieces: list[str], dumps: Dumps) -> str:
        item = (
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "run"}
            if tool
            else {"type": "message", "id": "msg_1", "role": "assistant", "content": []}
        )
        kind = "function_call_arguments" if tool else "output_text"
        response = {"id": "resp_1", "model": "gpt-4.1", "output": []}
        events: list[dict] = [
            {"type": "response.created", "response": response},
            {"type": "response.output_item.added", "output_index": 0, "item": item},
            *(
                {"type": f"response.{kind}.delta", "item_id": item["id"], "output_index": 0}
                | ({} if tool else {"content_index": 0})
                | {"delta": p}
                for p in pieces
            ),
            {"type": "response.completed", "response": {**response, "status": "completed"}},
        ]
        numbered = [{**e, "sequence_number": n} for n, e in enumerate(events)]
        return "".join(f"event: {e['type']}\ndata: {dumps(e)}\n\n" for e in numbered)

    return build


KINDS = [
    Kind(
        "anthropic-text",
        _anthropic({"type": "text", "text": ""}, lambda p: {"type": "text_delta", "text": p}),
        anthropic.read_stream,
    ),
    Kind(
        "anthropic-thinking",
        _anthropic(
            {"type": "thinking", "thinking": ""},
            lambda p: {"type": "thinking_delta", "thinking": p},
        ),
        anthropic.read_stream,
    ),
    Kind(
        "anthropic-tool-input",
        _anthropic(
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {}},
            lambda p: {"type": "input_json_delta", "partial_json": p},
        ),
        anthropic.read_stream,
        json_input=True,
    ),
    Kind("openai-chat-content", _chat(tool=False), openai_chat.read_stream),
    Kind("openai-chat-tool-arguments", _chat(tool=True), openai_chat.read_stream, True),
    Kind("openai-responses-text", _responses(tool=False), openai_responses.read_stream),
    Kind("openai-responses-arguments", _responses(tool=True), openai_responses.read_stream, True),
]
DUMPS: list[Dumps] = [
    json.dumps,
    lambda v: json.dumps(v, separators=(",", ":")),
    lambda v: json.dumps(v, ensure_ascii=False),
]


def reassembled(kind: Kind, body: bytes) -> str:
    """Everything the reply's blocks say, as a reader joining the pieces sees it."""
    events, _ = parse_all([body])
    reply = kind.reader(events)
    assert reply is not None, body
    return "\n".join(f"{b.text}\n{json.dumps(b.input, ensure_ascii=False)}" for b in reply.blocks)


def split(text: str, cuts: list[int]) -> list[str]:
    points = [0, *sorted(set(cuts)), len(text)]
    return [text[a:b] for a, b in zip(points, points[1:], strict=False) if b > a]


def whole_text(kind: Kind, pad: str, secret: str, tail: str) -> tuple[str, int]:
    """The text the model streams, and where the secret starts in it."""
    said = f"{pad} {secret} {tail}"
    if not kind.json_input:
        return said, len(pad) + 1
    text = json.dumps({"command": said})
    return text, text.index(secret)


# -- examples ------------------------------------------------------------------------


def test_a_key_in_three_pieces_is_masked_once_where_it_starts():
    kind = KINDS[0]
    pieces = ["Here is the key: " + KEY[:10], KEY[10:50], KEY[50:] + " (keep it safe)."]
    body = kind.build(pieces, json.dumps).encode()
    assert KEY.encode() not in body  # the hole: no event holds the key whole
    out = R.body(body, "text/event-stream")
    assert reassembled(kind, out).startswith("Here is the key: [REDACTED] (keep it safe).\n")
    for piece in pieces:
        assert piece.encode() not in out or piece == pieces[2]
    changed = [(a, b) for a, b in zip(body.splitlines(), out.splitlines(), strict=True) if a != b]
    assert [b for _, b in changed] == [
        b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", '
        b'"text": "Here is the key: [REDACTED]"}}',
        b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", '
        b'"text": ""}}',
        b'data: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", '
        b'"text": " (keep it safe)."}}',
    ]


def test_each_api_shape():
    for kind in KINDS:
        text, at = whole_text(kind, "run it with", KEY, "now")
        body = kind.build(split(text, [at + 5, at + 40, at + 90]), json.dumps).encode()
        out = R.body(body, "text/event-stream")
        assert b"abcDEF123" not in out, kind.name
        said = reassembled(kind, out)
        assert "run it with [REDACTED] now" in said, (kind.name, said)


def test_fingerprint_tags_the_whole_secret():
    fingerprinted = Redactor(fingerprint_key=b"k" * 32)
    body = KINDS[3].build(["key=" + KEY[:30], KEY[30:]], json.dumps).encode()
    out = fingerprinted.body(body, "text/event-stream").decode()
    assert fingerprinted.mask(KEY) in out and out.count("[REDACTED") == 1


def test_a_value_known_from_the_exchange():
    """The request's x-api-key, of no known shape, echoed by the model in pieces."""
    _, found = R.headers([("x-api-key", "Zq9localkey0123456789")])
    body = KINDS[5].build(["the key is Zq9local", "key01234", "56789, done"], json.dumps)
    out = R.body(body.encode(), "text/event-stream", set(found))
    assert b"key01234" not in out
    assert "the key is [REDACTED], done" in reassembled(KINDS[5], out)


def test_a_secret_named_in_one_event_is_masked_in_the_pieces_of_another():
    """Learnt by name from one event (a tool input's "api_key"), found split in a text."""
    named = {"type": "content_block_delta", "index": 1}
    named["delta"] = {"type": "input_json_delta", "partial_json": '{"api_key": "Zq9named0123456"}'}
    body = KINDS[0].build(["use Zq9nam", "ed0123456 here"], json.dumps)
    body += f"event: content_block_delta\ndata: {json.dumps(named)}\n\n"
    out = R.body(body.encode(), "text/event-stream")
    assert b"ed0123456" not in out
    assert "use [REDACTED] here" in reassembled(KINDS[0], out)


def test_escapes_and_other_characters_of_an_edited_piece_are_kept_as_written():
    event = (
        'data: {"type":"content_block_delta","index":0,'
        '"delta":{"type":"text_delta","text":"caf\\u00e9 \\"q\\"\\n%s"}}\n\n'
    )
    rest = 'data: {"type":"content_block_delta","index":0,"delta":{"text":"%s \\ud83d\\ude00"}}\n\n'
    body = event % KEY[:20] + rest % KEY[20:]
    out = R.body(body.encode(), "text/event-stream").decode()
    assert out == event % "[REDACTED]" + rest % ""


def test_streams_are_kept_apart():
    """Two content blocks, two tool calls: one's end and the next one's start are no
    secret together (the prefix in one, the body in the other)."""
    blocks = "".join(
        f"data: {json.dumps({'type': 'content_block_delta', 'index': i, 'delta': {'text': t}})}\n\n"
        for i, t in enumerate(["see ghp_", "a" * 36, " ok"])
    )
    assert R.body(blocks.encode(), "text/event-stream") == blocks.encode()


def test_a_body_cut_inside_a_split_secret():
    kind = KINDS[0]
    body = kind.build(["key: " + KEY[:20], KEY[20:60], KEY[60:]], json.dumps)
    for cut in (body.index(KEY[20:60]) + 10, body.index(KEY[60:]) - 5, body.index(KEY[60:])):
        out = R.body(body[:cut].encode(), "text/event-stream")
        assert b"abcDEF" not in out, (cut, out)


def test_a_stream_left_open_in_a_string_does_not_hide_the_next_one():
    """The streams are searched together: one that ends inside a JSON string (a tool
    input cut short) must not swallow the start of the next one."""
    event = "data: " + '{"type":"content_block_delta","index":%d,"delta":{"partial_json":%s}}\n\n'
    pieces = [(0, '{"password": "Zq9'), (0, "open"), (1, '{"api_key": "Zq9abc'), (1, 'def123"}')]
    body = (
        "".join(event % (i, json.dumps(p)) for i, p in pieces) + 'data: {"type":"message_stop"}\n\n'
    )
    out = R.body(body.encode(), "text/event-stream")
    assert b"def123" not in out and b"open" not in out, out


def test_hostile_streams_are_redacted_in_bounded_time():
    import time

    mb = 1024 * 1024
    wide = "data: [" + ",".join(['"ab"'] * 200_000) + "]\n\n"
    starts = "data: [" + ",".join(['"sk-ant-api03-"'] * 25_000) + "]\n\n"
    ends = "data: [" + ",".join(['"' + "X" * 20 + '"'] * 25_000) + "]\n\n"
    for body in (
        (wide * 2)[:mb],
        starts + ends,  # 25,000 secrets, each split in two
        "".join(f'data: {{"index":{i},"t":"sk-ant-api03-"}}\n\n' for i in range(40_000))[:mb],
        "".join('data: {"t":"a"}\n\n' for _ in range(70_000))[:mb],
        "data: " + "[" * 100_000 + "\n\n",
        "data: " + '{"a":' * 900 + '"x"' + "}" * 900 + "\n\n",
    ):
        start = time.monotonic()
        R.body(body.encode(), "text/event-stream")
        assert time.monotonic() - start < 5, body[:40]


def test_lines_that_are_not_json_and_other_bodies_are_untouched():
    for body, ctype in (
        ("data: [DONE]\n\n: keep-alive\n\ndata: {not json\n\n", "text/event-stream"),
        ("event: x\ndata: plain text\n\n", ""),
        ('{"data": "x"}', "application/json"),
    ):
        assert R.body(body.encode(), ctype) == body.encode()


# -- properties ----------------------------------------------------------------------

# Words shorter than the 12-character window, so filler never looks like a leak;
# quotes, escapes and characters outside ASCII test the JSON around the pieces.
_WORDS = ["the", "model", "said", "hello", "tokens", "key", "42", "ok", "é", "😀", '"', "\\"]
filler = st.lists(st.sampled_from(_WORDS), max_size=8).flatmap(
    lambda ws: st.sampled_from([" ", ", ", ".\n", "\t"]).map(lambda sep: sep.join(ws))
)
known_values = st.text(string.ascii_letters + string.digits, min_size=13, max_size=40).map(
    lambda s: Secret("Zq9" + s)
)


@st.composite
def split_secrets(draw):
    """(kind, dumps, body, secret, known, which pieces hold part of the secret)."""
    kind = draw(st.sampled_from(KINDS))
    known = draw(st.booleans())
    secret = draw(known_values if known else tokens())
    text, at = whole_text(kind, draw(filler), secret.value, draw(filler))
    inner = st.integers(at + 1, at + len(secret.value) - 1)
    cuts = draw(st.lists(inner, min_size=1, max_size=4, unique=True))
    cuts += draw(st.lists(st.integers(0, len(text)), max_size=2))
    pieces = split(text, cuts)
    holding, pos = set(), 0
    for i, piece in enumerate(pieces):
        if pos < at + len(secret.value) and pos + len(piece) > at:
            holding.add(i)
        pos += len(piece)
    body = kind.build(pieces, draw(st.sampled_from(DUMPS)))
    return kind, body, secret, {secret.value} if known else set(), pieces, holding


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_secrets())
def test_a_split_secret_is_never_stored_nor_joined_back(case):
    kind, body, secret, known, pieces, holding = case
    out = R.body(body.encode(), "text/event-stream", set(known))
    assert secret.leaked_in(out) is None, (secret.leaked_in(out), out)
    said = reassembled(kind, out)
    assert secret.leaked_in(said.encode()) is None, said
    assert "[REDACTED]" in said
    if kind.json_input:  # the tool's input still reads whole
        assert '{"command": ' in said
    # Events that hold no part of the secret are kept byte for byte; the others
    # are still one line of JSON each.
    before, after = body.encode().split(b"\n"), out.split(b"\n")
    assert len(before) == len(after)
    marked = kind.build([f"@piece{i}@" for i in range(len(pieces))], json.dumps).split("\n")
    holders = {n for n, line in enumerate(marked) for i in holding if f"@piece{i}@" in line}
    for n, (old, new) in enumerate(zip(before, after, strict=True)):
        if old != new:
            assert n in holders, (old, new)
            json.loads(new.removeprefix(b"data: "))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(split_secrets(), st.data())
def test_a_split_secret_cut_by_the_cap_is_masked_from_its_start(case, data):
    kind, body, secret, known, _, _ = case
    encoded = body.encode()
    cut = data.draw(st.integers(0, len(encoded)))
    out = R.body(encoded[:cut], "text/event-stream", set(known))
    assert secret.leaked_in(out) is None, (secret.leaked_in(out), out)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(KINDS),
    st.lists(filler, min_size=1, max_size=6),
    st.sampled_from(DUMPS),
)
def test_streams_without_secrets_are_stored_byte_for_byte(kind, pieces, dumps):
    if kind.json_input:
        text = json.dumps({"command": "".join(pieces)})
        pieces = split(text, [len(text) * i // len(pieces) for i in range(len(pieces))])
    body = kind.build(pieces, dumps).encode()
    assert R.body(body, "text/event-stream") == body


def test_a_cut_inside_an_escape_after_a_split_secret():
    """The last line stops inside a surrogate pair's escape, right after a secret
    split from the previous event: the piece is still found and masked."""
    event = 'data: {"type":"content_block_delta","index":0,"delta":{"text":%s}}\n\n'
    body = event % json.dumps("key: " + KEY[:30]) + event % json.dumps(KEY[30:] + " 😀")
    for cut in range(body.index("\\ude00") - 4, body.index("\\ude00") + 6):
        out = R.body(body[:cut].encode(), "text/event-stream")
        assert b"abcDEF" not in out, (cut, out)


# Characters that make no secret, whatever their order: what is tested is the reading.
LETTERS = 'ab "\\é😀\n'
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(LETTERS, max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["type", "index", "delta", "text", "x"]), inner, max_size=4
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(json_values, min_size=1, max_size=5), st.integers(0, 400), st.sampled_from(DUMPS))
def test_any_json_in_data_lines_is_read_without_error(docs, cut, dumps):
    """Whatever an event's JSON holds (a `type` that is a list, an `index` that is
    text, a bare string), cut anywhere, redaction neither fails nor changes it."""
    body = "".join(f"data: {dumps(doc)}\n\n" for doc in docs).encode()
    for data in (body, body[:cut]):
        assert R.body(data, "text/event-stream") == data


def test_a_lone_surrogate_in_a_fingerprinted_secret():
    """JSON may escape a lone surrogate ("\\ud800"); a secret holding one is still
    tagged (it used to fail to encode, JSON body or stream)."""
    fingerprinted = Redactor(fingerprint_key=b"k" * 32)
    for body, ctype in (
        (b'{"password": "abc\\ud800defgh"}', "application/json"),
        (b'data: {"t":"password=abc\\ud800"}\n\ndata: {"t":"defgh1234 ok"}\n\n', ""),
    ):
        out = fingerprinted.body(body, ctype)
        assert b"[REDACTED:" in out and b"defgh" not in out, out
