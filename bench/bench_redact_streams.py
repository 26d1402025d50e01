"""What joining a stream's pieces to find split secrets costs: `Redactor.body` on a
~20 KB streamed reply of each API (and one of 1 MiB, the default body cap), with the
stream pass and without it (event by event only, as before), in one process.

    .venv/bin/python bench/bench_redact_streams.py      # ~20 s

The two variants alternate run by run; medians of --runs runs are reported, and
the ratio. The bodies hold no secret: this is the cost every streamed reply pays.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import common

from agentlog.redact import Redactor
from agentlog.redaction import streams

PROSE = (
    "the model reads the file and then runs the tests; def main(args): return 0 "
    "if the value is None we stop here. Let me check src/agentlog/redact.py first"
)
WORDS = PROSE.split(" ")


def prose(n: int, seed: int) -> Iterator[str]:
    """Pieces of text as models stream them: a few words each."""
    for i in range(n):
        k = (i * 7 + seed) % len(WORDS)
        yield " " + " ".join(WORDS[k : k + 1 + (i + seed) % 4])


def anthropic(size: int) -> str:
    def event(data: dict) -> str:
        return f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"

    out = [
        event({"type": "message_start", "message": {"id": "msg_01", "type": "message"}}),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text"}}),
    ]
    pieces = prose(10**9, 1)
    while sum(map(len, out)) < size * 2 // 3:
        delta = {"type": "text_delta", "text": next(pieces)}
        out.append(event({"type": "content_block_delta", "index": 0, "delta": delta}))
    command = json.dumps({"command": " ".join(next(pieces) for _ in range(size // 30))})
    for i in range(0, len(command), 40):
        if sum(map(len, out)) >= size:
            break
        delta = {"type": "input_json_delta", "partial_json": command[i : i + 40]}
        out.append(event({"type": "content_block_delta", "index": 1, "delta": delta}))
    out += [event({"type": "message_delta", "delta": {}}), event({"type": "message_stop"})]
    return "".join(out)


def openai_chat(size: int) -> str:
    out: list[str] = []
    pieces = prose(10**9, 2)
    while sum(map(len, out)) < size:
        chunk = {
            "id": "chatcmpl-AiZnD4Qm8m0kXw1",
            "object": "chat.completion.chunk",
            "created": 1735000000,
            "model": "gpt-4o-2024-08-06",
            "choices": [{"index": 0, "delta": {"content": next(pieces)}, "finish_reason": None}],
        }
        out.append(f"data: {json.dumps(chunk, separators=(',', ':'))}\n\n")
    return "".join(out) + "data: [DONE]\n\n"


def openai_responses(size: int) -> str:
    out: list[str] = []
    pieces = prose(10**9, 3)
    while sum(map(len, out)) < size:
        data = {
            "type": "response.output_text.delta",
            "sequence_number": len(out),
            "item_id": "msg_67c9fdcf37fc8190ba82116e33fb28c507b8b0ad4e5eb654",
            "output_index": 0,
            "content_index": 0,
            "delta": next(pieces),
        }
        out.append(f"event: {data['type']}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n")
    done = {"type": "response.completed", "response": {"id": "resp_1", "output": []}}
    return "".join(out) + f"event: response.completed\ndata: {json.dumps(done)}\n\n"


@contextmanager
def event_by_event_only() -> Iterator[None]:
    """The redactor as it was before the stream pass."""
    saved = streams.is_stream
    streams.is_stream = lambda text, content_type: False
    try:
        yield
    finally:
        streams.is_stream = saved


def timed(redactor: Redactor, data: bytes) -> float:
    start = time.perf_counter()
    redactor.body(data, "text/event-stream")
    return (time.perf_counter() - start) * 1000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=200, help="runs per body and variant")
    p.add_argument("--json", type=Path, default=common.ROOT / "bench/results/redact_streams.json")
    args = p.parse_args()
    command = common.announce()
    print(f"# load average {os.getloadavg()[0]:.2f} at start")
    started = time.time()
    redactor = Redactor()
    bodies = {
        "anthropic 20 KB": anthropic(20_000),
        "openai chat 20 KB": openai_chat(20_000),
        "openai responses 20 KB": openai_responses(20_000),
        "anthropic 1 MiB": anthropic(1024 * 1024),
    }
    rows = {}
    print("| body | bytes | events | event by event ms | with the stream pass ms | ratio |")
    print("|---|---|---|---|---|---|")
    for name, text in bodies.items():
        data = text.encode()
        assert redactor.body(data, "text/event-stream") == data  # no secret: unchanged
        runs = max(5, args.runs // 20) if len(data) > 100_000 else args.runs
        before, after = [], []
        for _ in range(runs):
            with event_by_event_only():
                before.append(timed(redactor, data))
            after.append(timed(redactor, data))
        old, new = common.median(before), common.median(after)
        rows[name] = {"bytes": len(data), "before_ms": old, "after_ms": new, "runs": runs}
        events = text.count("data:")
        print(f"| {name} | {len(data)} | {events} | {old:.3f} | {new:.3f} | {new / old:.2f}× |")
    print(f"# load average {os.getloadavg()[0]:.2f} at end")
    common.write_results(args.json, command, started, args, {"bodies": rows})


if __name__ == "__main__":
    main()
