"""FakeAnthropic: a local stand-in for the Anthropic Messages API. Stdlib only.

It runs with a bare ``python3`` (a container needs nothing else)::

    python3 tests/fakes/anthropic.py --listen 127.0.0.1:8443 --cert C.pem --key K.pem

(plain HTTP without ``--cert``; port 0 picks a free one). When it listens it
prints one JSON line, ``{"listening": "HOST:PORT", "port": N, "tls": true}``,
and serves until SIGINT/SIGTERM. ``--log FILE`` appends every request it
answered as a JSON line; ``--gap-ms`` sets the time between streamed events.
In a test::

    with FakeAnthropic(cert, key) as fake:
        ... fake.port, fake.requests(), fake.usage_totals()

HTTP/1.1 with keep-alive, TCP_NODELAY, TLS offering ALPN ``http/1.1`` only.

What it answers
---------------
``POST /v1/messages`` (any query, e.g. ``?beta=true``): a message decided by the
request alone, as JSON, or with ``"stream": true`` as the API's SSE events
(message_start, content_block_start, ping, content_block_delta ...,
content_block_stop, message_delta, message_stop), ``gap`` seconds apart (40 ms):

* the last user message carries a ``tool_result``: a **final** text turn that
  quotes the result (stop_reason ``end_turn``);
* the prompt (the last user message's text, ``<system-reminder>`` blocks left
  out) contains ``write the file NAME`` (optionally followed by
  ``containing "TEXT"``): a **tool_use** turn, a short text block then a call of
  the ``Write`` tool offered in the request's ``tools`` (its input names taken
  from the tool's input schema: ``file_path`` and ``content`` for Claude Code).
  A relative NAME is joined to the ``working directory:`` the request states
  (Claude Code's: "Primary working directory: DIR"). The tool's input is
  streamed as several ``input_json_delta`` pieces; stop_reason ``tool_use``.
  Without a Write tool offered: a text turn saying so;
* otherwise a **text** turn: ``Fake reply: you said "PROMPT"`` (PROMPT cut at
  200 characters), stop_reason ``end_turn``.

Usage per turn (the same in message_start and, cumulative, message_delta;
message_start's ``output_tokens`` is 1, as the API's)::

    turn       input  output  cache_creation  cache_read
    text         100      20             300        4000
    tool_use     200      40             500        5000
    final        300      60             700        6000

Failures, decided by the prompt (``[fail:429]``, ``[fail:529]``, optionally with
a count: ``[fail:529x2]``) or by a request header (``x-fake-fail: 429``,
``x-fake-fail: 529x2``): the first such request(s) for the same prompt get the
error, later ones the normal answer (counted per fake: a new one fails again).
429 is a ``rate_limit_error``, 529 an ``overloaded_error``; both with
``retry-after: 1`` and ``x-should-retry: true``, as the API's.

Everything else never hangs: ``POST /v1/messages/count_tokens`` answers
``{"input_tokens": 100}``; ``GET /v1/models`` one model; ``HEAD`` or ``GET`` of
``/`` and ``/api/hello`` (Claude Code's reachability check) a small 200;
``POST /api/event_logging/...`` (its telemetry) ``{}``; any other path a 404
``not_found_error``, the API's shape (Claude Code 2.1.332 asks for
``/api/claude_code/settings`` and ``/policy_limits``, and without
CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC a few more ``/api/...``: it carries on).
Every request is logged (``requests()``): method, path, headers, body, status,
and for a message its turn kind and usage.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

USAGE: dict[str, dict[str, int]] = {
    "text": {
        "input_tokens": 100,
        "output_tokens": 20,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 4000,
    },
    "tool_use": {
        "input_tokens": 200,
        "output_tokens": 40,
        "cache_creation_input_tokens": 500,
        "cache_read_input_tokens": 5000,
    },
    "final": {
        "input_tokens": 300,
        "output_tokens": 60,
        "cache_creation_input_tokens": 700,
        "cache_read_input_tokens": 6000,
    },
}
DEFAULT_CONTENT = "written by the fake Anthropic API\n"
GAP = 0.04  # seconds between streamed events
MAX_BODY = 64 * 1024 * 1024
_QUOTE = 200
_WRITE = re.compile(r'write the file (\S+?)[.,;:!?]*(?:\s|$)(?:\s*containing "([^"]*)")?')
_FAIL = re.compile(r"\[fail:(429|529)(?:x(\d+))?\]")
_FAIL_HEADER = re.compile(r"^\s*(429|529)(?:x(\d+))?\s*$")
_REMINDER = re.compile(r"<system-reminder>.*?</system-reminder>", re.S)
_WORKDIR = re.compile(r"working directory: (\S+)", re.I)  # Claude Code: "Primary working ..."
_REASONS = {529: "Overloaded"}  # not in http.server's table
_ERRORS = {
    429: ("rate_limit_error", "Number of request tokens has exceeded your rate limit (fake)."),
    529: ("overloaded_error", "Overloaded (fake)"),
}


# -- the answer, decided by the request (pure) --------------------------------


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if not isinstance(content, list):
        return []
    return [b["text"] for b in content if isinstance(b, dict) and isinstance(b.get("text"), str)]


def _last_user(body: dict[str, Any]) -> dict[str, Any]:
    messages = body.get("messages")
    if not isinstance(messages, list):
        return {}
    users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
    return users[-1] if users else {}


def prompt_of(body: dict[str, Any]) -> str:
    """The last user message's text, system reminders left out."""
    texts = (_REMINDER.sub("", t).strip() for t in _texts(_last_user(body).get("content")))
    return "\n".join(t for t in texts if t)


def _tool_results(body: dict[str, Any]) -> list[dict[str, Any]]:
    content = _last_user(body).get("content")
    if not isinstance(content, list):
        return []
    return [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]


def _working_directory(body: dict[str, Any]) -> str | None:
    system = body.get("system")
    texts = _texts(system) if isinstance(system, list) else [system] if system else []
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            texts += _texts(message.get("content"))
    for text in texts:
        found = _WORKDIR.search(str(text))
        if found:
            return found.group(1)
    return None


def _write_tool(body: dict[str, Any]) -> tuple[str, str, str] | None:
    """(name, path property, content property) of the Write tool the request offers."""
    for tool in body.get("tools") or []:
        if not isinstance(tool, dict) or tool.get("name") != "Write":
            continue
        properties = (tool.get("input_schema") or {}).get("properties") or {}
        path = next((p for p in properties if "path" in p), None)
        content = next((p for p in properties if "content" in p), None)
        if path and content:
            return tool["name"], path, content
    return None


def _quote(text: str) -> str:
    return text if len(text) <= _QUOTE else text[:_QUOTE] + "..."


def plan_turn(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]], str]:
    """(turn kind, content blocks, stop_reason) for a Messages request."""
    results = _tool_results(body)
    if results:
        said = " ".join(
            " ".join(_texts(r.get("content"))) or str(r.get("content", "")) for r in results
        )
        text = f'Done: the tool answered "{_quote(said.strip())}".'
        return "final", [{"type": "text", "text": text}], "end_turn"
    prompt = prompt_of(body)
    wanted = _WRITE.search(prompt)
    if wanted:
        tool = _write_tool(body)
        if tool is None:
            text = f"Fake reply: no Write tool was offered to write {wanted.group(1)}."
            return "text", [{"type": "text", "text": text}], "end_turn"
        name, path_key, content_key = tool
        path = wanted.group(1)
        workdir = _working_directory(body)
        if not path.startswith("/") and workdir:
            path = workdir.rstrip("/") + "/" + path
        content = DEFAULT_CONTENT if wanted.group(2) is None else wanted.group(2)
        blocks = [
            {"type": "text", "text": f"I will write the file {path}."},
            {
                "type": "tool_use",
                "id": "",  # numbered when answered
                "name": name,
                "input": {path_key: path, content_key: content},
            },
        ]
        return "tool_use", blocks, "tool_use"
    text = f'Fake reply: you said "{_quote(prompt)}"'
    return "text", [{"type": "text", "text": text}], "end_turn"


def failure_of(body: dict[str, Any], header: str | None) -> tuple[int, int] | None:
    """(status, how many times) if the request asks to fail."""
    found = _FAIL_HEADER.match(header) if header else None
    found = found or _FAIL.search(prompt_of(body))
    if not found:
        return None
    return int(found.group(1)), int(found.group(2) or 1)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _words(text: str, per_piece: int = 3) -> list[str]:
    words = re.findall(r"\S+\s*|\s+", text)
    return ["".join(words[i : i + per_piece]) for i in range(0, len(words), per_piece)] or [""]


def message_of(
    msg_id: str, model: str, blocks: list[dict[str, Any]], stop: str, usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": {**usage, "service_tier": "standard"},
    }


def sse_events(message: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The stream of ``message`` as the API sends it: (event name, data)."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            opening = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in _words(block["text"])]
        else:
            opening = {**block, "input": {}}
            encoded = json.dumps(block["input"])
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _pieces(encoded, 16)]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": opening},
            )
        )
        if index == 0:
            events.append(("ping", {"type": "ping"}))
        events += [
            ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d})
            for d in deltas
        ]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    final_usage = {k: v for k, v in usage.items() if k != "service_tier"}
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(
        ("message_delta", {"type": "message_delta", "delta": delta, "usage": final_usage})
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def error_body(status: int) -> dict[str, Any]:
    kind, text = _ERRORS.get(status, ("api_error", "error (fake)"))
    return {"type": "error", "error": {"type": kind, "message": text}}


# -- the server ---------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY on every accepted connection
    timeout = 120  # an idle keep-alive connection ends, its thread too
    server: _Server

    def version_string(self) -> str:
        return "fake-anthropic"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        pass

    # -- request plumbing --

    def _body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY:
                    raise ValueError("body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status, _REASONS.get(status))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", self.server.fake.next_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    # -- methods --

    def do_HEAD(self) -> None:
        self._answer()

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self._answer()

    def do_PUT(self) -> None:
        self._answer()

    def do_DELETE(self) -> None:
        self._answer()

    def do_PATCH(self) -> None:
        self._answer()

    def do_OPTIONS(self) -> None:
        self._answer()

    def _answer(self) -> None:
        fake = self.server.fake
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }
        try:
            raw = self._body()
            try:
                entry["body"] = json.loads(raw) if raw else None
            except ValueError:
                entry["body"] = raw[:4096].decode("utf-8", "replace")
            entry["status"] = self._route(entry)
        except (ConnectionError, TimeoutError, ssl.SSLError) as error:
            entry["error"] = repr(error)
            self.close_connection = True
        except ValueError as error:
            entry["error"] = repr(error)
            entry["status"] = 400
            self._send(
                400,
                {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": str(error)},
                },
            )
            self.close_connection = True
        finally:
            fake.log(entry)

    def _route(self, entry: dict[str, Any]) -> int:
        path = self.path.split("?", 1)[0]
        method, body = self.command, entry["body"]
        if method == "POST" and path == "/v1/messages":
            if not isinstance(body, dict):
                raise ValueError("the body is not a JSON object")
            return self._messages(body, entry)
        if method == "POST" and path == "/v1/messages/count_tokens":
            self._send(200, {"input_tokens": USAGE["text"]["input_tokens"]})
            return 200
        if method == "GET" and path == "/v1/models":
            model = {
                "type": "model",
                "id": "claude-fake-1",
                "display_name": "Fake",
                "created_at": "2025-01-01T00:00:00Z",
            }
            self._send(
                200,
                {
                    "data": [model],
                    "has_more": False,
                    "first_id": model["id"],
                    "last_id": model["id"],
                },
            )
            return 200
        if method == "POST" and path.startswith("/api/event_logging/"):  # telemetry: taken
            self._send(200, {})
            return 200
        if method in ("GET", "HEAD") and path in ("/", "/api/hello"):  # reachability checks
            self._send(200, {"fake": "anthropic"})
            return 200
        self._send(
            404,
            {
                "type": "error",
                "error": {"type": "not_found_error", "message": f"no {method} {path} here (fake)"},
            },
        )
        return 404

    def _messages(self, body: dict[str, Any], entry: dict[str, Any]) -> int:
        fake = self.server.fake
        failure = failure_of(body, self.headers.get("x-fake-fail"))
        if failure is not None and fake.take_failure(failure, prompt_of(body)):
            status = failure[0]
            entry["failed"] = status
            self._send(status, error_body(status), {"retry-after": "1", "x-should-retry": "true"})
            return status
        kind, blocks, stop = plan_turn(body)
        for block in blocks:
            if block["type"] == "tool_use":
                block["id"] = fake.next_id("toolu")
        usage = dict(USAGE[kind])
        model = str(body.get("model") or "claude-fake-1")
        message = message_of(fake.next_id("msg"), model, blocks, stop, usage)
        entry["turn"], entry["usage"], entry["reply"] = kind, usage, blocks
        if not body.get("stream"):
            self._send(200, message)
            return 200
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", fake.next_id("req"))
        self.end_headers()
        self.wfile.flush()
        for n, (name, data) in enumerate(sse_events(message)):
            if n:
                time.sleep(fake.gap)
            self._chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        return 200


class _Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def __init__(
        self, address: tuple[str, int], fake: FakeAnthropic, tls: ssl.SSLContext | None
    ) -> None:
        self.fake, self.tls = fake, tls
        self.open: set[socket.socket] = set()
        self.open_lock = threading.Lock()
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """In the connection's own thread: the TLS handshake, then HTTP."""
        with self.open_lock:
            self.open.add(request)
        connection = request
        try:
            if self.tls is not None:
                request.settimeout(_Handler.timeout)
                connection = self.tls.wrap_socket(request, server_side=True)  # takes the fd
                with self.open_lock:
                    self.open.discard(request)
                    self.open.add(connection)
            super().finish_request(connection, client_address)
        except (OSError, ssl.SSLError):
            pass  # a client that went away or spoke no TLS: nothing to answer
        finally:
            with self.open_lock:
                self.open.discard(request)
                self.open.discard(connection)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a broken connection is the client's business; the log has the request

    def drop_connections(self) -> None:
        with self.open_lock:
            for sock in list(self.open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


class FakeAnthropic:
    """See the module docstring. ``port`` is 0 until ``start()`` binds it."""

    def __init__(
        self,
        cert_file: str | None = None,
        key_file: str | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        gap: float = GAP,
        log_file: str | None = None,
    ) -> None:
        self.host, self.port, self.gap = host, port, gap
        self.tls: ssl.SSLContext | None = None
        if cert_file:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
            self.tls.set_alpn_protocols(["http/1.1"])
        self._log_file = log_file
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._failed: dict[tuple[int, str], int] = {}
        self._ids = itertools.count(1)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def start(self) -> FakeAnthropic:
        self._server = _Server((self.host, self.port), self, self.tls)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="FakeAnthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._server = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state shared by the connections' threads --

    def next_id(self, prefix: str) -> str:
        with self._lock:
            return f"{prefix}_fake{next(self._ids):04d}"

    def take_failure(self, failure: tuple[int, int], prompt: str) -> bool:
        """True while this prompt has had fewer than the asked failures of this status."""
        status, times = failure
        with self._lock:
            done = self._failed.get((status, prompt), 0)
            if done >= times:
                return False
            self._failed[(status, prompt)] = done + 1
            return True

    def log(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(entry)
            if self._log_file:
                with open(self._log_file, "a", encoding="utf-8") as out:
                    out.write(json.dumps(entry) + "\n")

    def requests(self) -> list[dict[str, Any]]:
        """Every request answered so far, in order (copies of the log's entries)."""
        with self._lock:
            return [dict(e) for e in self._requests]

    def turns(self) -> list[dict[str, Any]]:
        """The messages answered with 200: their turn kind and usage, in order."""
        return [e for e in self.requests() if e.get("turn") and e.get("status") == 200]

    def usage_totals(self) -> dict[str, int]:
        totals = dict.fromkeys(USAGE["text"], 0)
        for turn in self.turns():
            for key, value in turn["usage"].items():
                totals[key] += value
        return totals


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--listen", default="127.0.0.1:0", help="HOST:PORT (port 0: pick a free one)"
    )
    parser.add_argument("--cert", help="PEM certificate (chain); without it, plain HTTP")
    parser.add_argument("--key", help="PEM private key of the certificate")
    parser.add_argument("--log", help="append each request answered to this file, as JSON lines")
    parser.add_argument(
        "--gap-ms", type=float, default=GAP * 1000, help="time between streamed events"
    )
    args = parser.parse_args(argv)
    host, _, port = args.listen.rpartition(":")
    stop_signals = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)  # inherited by the server's threads
    fake = FakeAnthropic(
        args.cert,
        args.key,
        host=host.strip("[]") or "0.0.0.0",
        port=int(port),
        gap=args.gap_ms / 1000,
        log_file=args.log,
    )
    with fake:
        ready = {
            "listening": f"{fake.host}:{fake.port}",
            "port": fake.port,
            "tls": fake.tls is not None,
        }
        print(json.dumps(ready), flush=True)
        signal.sigwait(stop_signals)
    sys.exit(0)


if __name__ == "__main__":
    main()
