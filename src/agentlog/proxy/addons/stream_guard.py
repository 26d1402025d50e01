"""StreamGuard: streams a client resets cost it, not the journal (HTTP/2 rapid reset);
and an HTTP/1 request head has a size limit (head_limit.py).

A client that opens HTTP/2 streams and resets them at once, in a loop
(CVE-2023-44487), got two journal lines written per stream (4,000 streams in
0.6 s: 6.5 MB) and, worse, most of those requests forwarded: when a stream's
HEADERS (ending it) and its RST_STREAM come in one read, h2 reports the stream
closed by the time mitmproxy sees its end; mitmproxy forgets it there, then
drops its reset, and carries on with the request. So, for HTTP/2 clients,
mitmproxy's HttpLayer is swapped (at `next_layer`, as the TcpRecorder swaps
its TCPLayer) for one whose server side:

- drops the streams a client opens and resets within one read before
  mitmproxy makes a flow of them (DoomedStreamFilter): nothing of them is
  dialled, no hook runs, nothing is recorded; they are counted in the Tally,
  one `connection` event (`streams_reset`) per client a second;
- lets any other reset reach its stream, even one whose end came in the same
  read, so mitmproxy kills the request (a request already recorded keeps its
  request and error events: the write-ahead record stands);
- closes the connection with GOAWAY (ENHANCE_YOUR_CALM) once its client has
  reset more than `max_resets` streams within a second (`reset_flood`).
"""

import time
from collections.abc import Buffer, Callable
from dataclasses import dataclass
from typing import Any

import h2.config
import h2.errors
import h2.events
from h2.connection import ConnectionState
from mitmproxy import connection
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HttpLayer, HTTPMode, is_h3_alpn
from mitmproxy.proxy.layers.http._http2 import Http2Server, StreamState
from mitmproxy.proxy.layers.http._http_h2 import BufferedH2Connection

from agentlog.config import Limits
from agentlog.proxy.addons.head_limit import HeadLimitedHttp1Server
from agentlog.proxy.addons.tally import Tally

STREAMS_RESET, RESET_FLOOD = "streams_reset", "reset_flood"
HEADER_TOO_LARGE = "header_too_large"
PARSE_CHUNK = 1024  # bytes of a read h2 parses before the resets in it are counted


@dataclass(slots=True)
class Window:
    """Counts over windows of `length` seconds, each starting at its first count."""

    length: float = 1.0
    start: float = float("-inf")
    count: int = 0

    def add(self, now: float, n: int = 1) -> int:
        """Count `n` at `now`; return the count of its window so far."""
        if now - self.start >= self.length:
            self.start, self.count = now, 0
        self.count += n
        return self.count


class DoomedStreamFilter(BufferedH2Connection):
    """mitmproxy's h2 connection, leaving out of each read the streams that were opened
    and reset within it (`doomed(n)` is told how many), and not even parsing the rest of
    a read once its resets are more than `allowed()`: that connection is closing."""

    def __init__(
        self,
        config: h2.config.H2Configuration,
        doomed: Callable[[int], None],
        allowed: Callable[[], int],
    ) -> None:
        super().__init__(config)
        self.doomed = doomed
        self.allowed = allowed

    def receive_data(self, data: Buffer) -> list[h2.events.Event]:
        data = bytes(data)
        received: list[h2.events.Event] = []
        resets = 0
        for start in range(0, len(data), PARSE_CHUNK):  # h2 parses ~40 µs a stream
            parsed = super().receive_data(data[start : start + PARSE_CHUNK])
            received += parsed
            resets += sum(isinstance(e, h2.events.StreamReset) for e in parsed)
            if resets > self.allowed():
                break
        if not resets:
            return received
        opened = {e.stream_id for e in received if isinstance(e, h2.events.RequestReceived)}
        doomed = opened & {e.stream_id for e in received if isinstance(e, h2.events.StreamReset)}
        if not doomed:
            return received
        kept = []
        for event in received:
            if getattr(event, "stream_id", None) not in doomed:
                kept.append(event)
            elif isinstance(event, h2.events.DataReceived):  # the connection's window still
                self.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        self.doomed(len(doomed))
        return kept


class GuardedHttp2Server(Http2Server):
    """mitmproxy's HTTP/2 server side: streams reset at once dropped, every other reset
    delivered, their rate limited."""

    def __init__(self, context: Context, guard: "StreamGuard") -> None:
        super().__init__(context)
        self.h2_conn = DoomedStreamFilter(self.h2_conf, self._doomed, self._allowed)
        self.guard = guard
        self.resets = Window()
        self.calm_down = False  # past the limit: GOAWAY once this read is handled
        self._ended: set[int] = set()  # streams forgotten at their end in the current read

    def _doomed(self, count: int) -> None:
        self.guard.streams_reset(self.context.client, count)
        self._count_resets(count)

    def _allowed(self) -> int:
        """Resets the client may still make in the current second."""
        now = time.monotonic()
        fresh = now - self.resets.start >= self.resets.length
        return self.guard.max_resets - (0 if fresh else self.resets.count)

    def _count_resets(self, count: int) -> None:
        if self.resets.add(time.monotonic(), count) > self.guard.max_resets:
            self.calm_down = True

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from super()._handle_event(event)
        self._ended.clear()
        if self.calm_down and self.h2_conn.state_machine.state is not ConnectionState.CLOSED:
            yield from self._goaway()

    def _goaway(self) -> layer.CommandGenerator[None]:
        self.calm_down = False
        self.guard.reset_flood(self.context.client)
        yield from self.protocol_error(
            f"more than {self.guard.max_resets} streams reset within a second",
            h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
        )

    def handle_h2_event(self, event: h2.events.Event) -> layer.CommandGenerator[bool]:
        if isinstance(event, h2.events.StreamEnded):
            known = event.stream_id in self.streams
            stop = yield from super().handle_h2_event(event)
            if known and event.stream_id not in self.streams:
                self._ended.add(event.stream_id)
            return stop
        if not isinstance(event, h2.events.StreamReset):
            return (yield from super().handle_h2_event(event))
        if event.stream_id in self._ended:
            # Forgotten at its end, which h2 saw as closed because of this very reset.
            self.streams[event.stream_id] = StreamState.HEADERS_RECEIVED
        stop = yield from super().handle_h2_event(event)
        self._count_resets(1)
        if not self.calm_down:
            return stop
        yield from self._goaway()
        return True  # the rest of this read is dropped with the connection


class GuardedHttpLayer(HttpLayer):
    """mitmproxy's HTTP layer, with a GuardedHttp2Server for an HTTP/2 client and a
    HeadLimitedHttp1Server for an HTTP/1 one."""

    def __init__(self, context: Context, mode: HTTPMode, guard: "StreamGuard") -> None:
        super().__init__(context, mode)
        self.guard = guard

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start):
            alpn, guard = self.context.client.alpn, self.guard
            server: layer.Layer | None = None
            if alpn == b"h2":
                server = GuardedHttp2Server(self.context.fork(), guard)
            elif not is_h3_alpn(alpn):
                limit = guard.limits.max_header_size
                server = HeadLimitedHttp1Server(self.context.fork(), limit, guard.header_too_large)
            if server is not None:
                self.connections.setdefault(self.context.client, server)  # mitmproxy keeps it
        return super()._handle_event(event)


class StreamGuard:
    def __init__(self, limits: Limits, tally: Tally) -> None:
        self.limits = limits
        self.max_resets = limits.max_resets
        self.tally = tally

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Put a GuardedHttpLayer where mitmproxy chose its HttpLayer (alone or atop TLS)."""
        parent: Any = None  # a tunnel layer: its child is the next one
        chosen = nextlayer.layer
        while chosen is not None and type(chosen) is not HttpLayer:
            parent, chosen = chosen, getattr(chosen, "child_layer", None)
        if chosen is None:
            return
        chosen.context.layers.remove(chosen)
        guarded = GuardedHttpLayer(chosen.context, chosen.mode, self)
        if parent is None:
            nextlayer.layer = guarded
        else:
            parent.child_layer = guarded

    def streams_reset(self, client: connection.Client, count: int) -> None:
        self.tally.add(client, STREAMS_RESET, None, count)

    def reset_flood(self, client: connection.Client) -> None:
        self.tally.add(client, RESET_FLOOD, self.max_resets)

    def header_too_large(self, client: connection.Client) -> None:
        self.tally.add(client, HEADER_TOO_LARGE, self.limits.max_header_size)
