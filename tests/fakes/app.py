"""The ASGI application behind FakeUpstream (served by hypercorn: h1, h2, WebSocket).

Endpoints: /hello, /echo, /bytes?n=N, /sse?n=N[&hold_ms=M], /ws, /status/CODE,
/reply (the response the request's ``x-reply`` header describes; so do /v1/messages,
/v1/chat/completions and /v1/responses, the model APIs' paths),
/bomb?coding=br|gzip|deflate|zstd&mib=N[&label=NAME] (N MiB of zeros, compressed:
a decompression bomb; `label` is sent as its Content-Encoding instead).
``/reset`` lives in ``reset.py`` because an ASGI app cannot abort its TCP
connection with an RST.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHUNK_SIZE = 64 * 1024
MODEL_API_PATHS = ("/v1/messages", "/v1/chat/completions", "/v1/responses")
_PERIOD = 251  # prime, so consecutive 64 KiB chunks differ from one another
_BLOCK = bytes(range(_PERIOD)) * (CHUNK_SIZE // _PERIOD + 2)


def byte_pattern(n: int, offset: int = 0) -> bytes:
    """The deterministic content of ``/bytes?n=...`` (byte i is ``i % 251``)."""
    out = bytearray()
    while len(out) < n:
        start = (offset + len(out)) % _PERIOD
        out += _BLOCK[start : start + min(CHUNK_SIZE, n - len(out))]
    return bytes(out)


@functools.cache
def bomb(coding: str, mib: int) -> bytes:
    """`mib` MiB of zeros in `coding` (br: 300 MiB is 481 bytes on the wire)."""
    import brotli

    if sys.version_info >= (3, 14):
        from compression import zstd
    else:
        from backports import zstd

    compressor = {
        "br": lambda: brotli.Compressor(quality=5),
        "gzip": lambda: zlib.compressobj(9, zlib.DEFLATED, 31),
        "deflate": lambda: zlib.compressobj(9),
        "zstd": lambda: zstd.ZstdCompressor(level=3),
    }[coding]()
    feed = getattr(compressor, "process", None) or compressor.compress
    end = getattr(compressor, "finish", None) or compressor.flush
    zeros = bytes(1 << 20)
    return b"".join(feed(zeros) for _ in range(mib)) + end()


class UpstreamApp:
    """ASGI app. ``hits`` counts requests per path (query excluded), all protocols.

    The SSE gate is an ``asyncio.Event`` of the serving loop: change it only on
    that loop (FakeUpstream does so via ``run_coroutine_threadsafe``).
    """

    def __init__(
        self, hits: Counter[str], sse_first_sent: threading.Event, sse_gate: asyncio.Event
    ) -> None:
        self.hits = hits
        self.sse_first_sent = sse_first_sent
        self.sse_gate = sse_gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        path: str = scope["path"]
        self.hits[path] += 1
        if scope["type"] == "websocket":
            await (
                _ws_echo(receive, send)
                if path == "/ws"
                else send({"type": "websocket.close", "code": 1008})
            )
            return
        query = {k: v[-1] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
        if path == "/hello":
            await _respond(send, 200, b"hello", "text/plain")
        elif path == "/echo":
            await _echo(scope, receive, send)
        elif path == "/bytes":
            await _bytes(send, int(query.get("n", "0")))
        elif path == "/sse":
            await self._sse(receive, send, int(query.get("n", "3")), query.get("hold_ms"))
        elif path == "/bomb":
            coding, mib = query.get("coding", "br"), int(query.get("mib", "100"))
            body = await asyncio.to_thread(bomb, coding, mib)
            label = query.get("label", coding)  # another name for it: x-gzip, x-compress
            extra = [(b"content-encoding", label.encode())]
            extra.append((b"content-length", str(len(body)).encode()))
            await _start(send, 200, "text/plain", extra)
            await send({"type": "http.response.body", "body": body})
        elif path.startswith("/status/"):
            await _status(send, path.removeprefix("/status/"))
        elif path == "/reply" or path in MODEL_API_PATHS:
            await _reply(scope, receive, send)
        else:
            await _respond(send, 404, b"not found\n", "text/plain")

    async def _sse(self, receive: Receive, send: Send, n: int, hold_ms: str | None) -> None:
        await _start(send, 200, "text/event-stream", [(b"cache-control", b"no-cache")])
        self.sse_first_sent.set()  # before the write: a client that has event 0 sees it set
        await send({"type": "http.response.body", "body": b"data: 0\n\n", "more_body": True})
        hold = asyncio.sleep(int(hold_ms) / 1000) if hold_ms is not None else self.sse_gate.wait()
        if not await _unless_disconnected(hold, receive):
            return
        for i in range(1, n):
            await send(
                {"type": "http.response.body", "body": f"data: {i}\n\n".encode(), "more_body": True}
            )
        await send({"type": "http.response.body", "body": b""})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _unless_disconnected(hold: Awaitable[object], receive: Receive) -> bool:
    """Await ``hold``; False (and ``hold`` cancelled) if the client goes away first."""
    held = asyncio.ensure_future(hold)
    gone = asyncio.ensure_future(_disconnected(receive))
    await asyncio.wait((held, gone), return_when=asyncio.FIRST_COMPLETED)
    for task in (held, gone):
        task.cancel()
    return held.done() and not held.cancelled()


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _start(
    send: Send, status: int, content_type: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [(b"content-type", content_type.encode()), *(extra or [])]
    await send({"type": "http.response.start", "status": status, "headers": headers})


async def _respond(send: Send, status: int, body: bytes, content_type: str) -> None:
    await _start(send, status, content_type, [(b"content-length", str(len(body)).encode())])
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> bytes:
    body = bytearray()
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    return bytes(body)


async def _echo(scope: Scope, receive: Receive, send: Send) -> None:
    body = await _read_body(receive)
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope["headers"]:
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    path = scope["raw_path"].decode("latin-1")
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    payload = {
        "method": scope["method"],
        "path": path,
        "headers": headers,
        "body": body.decode("utf-8", errors="replace"),
        "body_len": len(body),
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
    }
    await _respond(send, 200, json.dumps(payload).encode(), "application/json")


async def _reply(scope: Scope, receive: Receive, send: Send) -> None:
    """Answer as told by the ``x-reply`` header: base64 of JSON {"status",
    "headers": [[name, value], ...], "body", "chunked"}. Encoded, so that what
    the response will hold is not itself in the request's headers."""
    await _read_body(receive)
    raw = dict(scope["headers"]).get(b"x-reply", b"e30=")  # {}
    spec = json.loads(base64.b64decode(raw))
    body = spec.get("body", "").encode()
    headers = [(k.lower().encode(), v.encode()) for k, v in spec.get("headers", [])]
    if not spec.get("chunked"):
        headers.append((b"content-length", str(len(body)).encode()))
    await send(
        {"type": "http.response.start", "status": spec.get("status", 200), "headers": headers}
    )
    half = len(body) // 2
    await send({"type": "http.response.body", "body": body[:half], "more_body": True})
    await send({"type": "http.response.body", "body": body[half:]})


async def _bytes(send: Send, n: int) -> None:
    await _start(send, 200, "application/octet-stream", [(b"content-length", str(n).encode())])
    for offset in range(0, n, CHUNK_SIZE):
        chunk = byte_pattern(min(CHUNK_SIZE, n - offset), offset)
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b""})


async def _status(send: Send, code_text: str) -> None:
    code = int(code_text) if code_text.isdigit() else 0
    if not 200 <= code <= 599:
        await _respond(send, 400, b"status must be 200..599\n", "text/plain")
    elif code in (204, 304):
        await _start(send, code, "text/plain")
        await send({"type": "http.response.body", "body": b""})
    else:
        await _respond(send, code, f"status {code}\n".encode(), "text/plain")


async def _ws_echo(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            if message.get("text") is not None:
                await send({"type": "websocket.send", "text": message["text"]})
            else:
                await send({"type": "websocket.send", "bytes": message["bytes"]})
        else:  # websocket.disconnect
            return
