"""StreamGuard: streams a client resets cost it, not the journal (HTTP/2 rapid reset).

A client that opens HTTP/2 streams and resets them in a loop (CVE-2023-44487)
got two journal lines written per stream (4,000 streams in 0.6 s: 6.5 MB), and
mitmproxy forwarded most of those requests all the same: when a stream's
HEADERS (ending it) and its RST_STREAM come in one read, h2 reports the stream
closed by the time mitmproxy sees its end, mitmproxy forgets it there, and
then drops its reset. So:

- GuardedHttp2Server lets such a reset reach its stream (mitmproxy then kills
  the request, unforwarded), and closes the connection with GOAWAY
  (ENHANCE_YOUR_CALM) once its client has reset more than `max_resets`
  streams within a second: what one connection can cost is bounded.
- GuardedHttpLayer notes on a stream's flow that its client reset it (or went
  away) while its request headers were being handled.
- StreamGuard swaps those layers in and, at `requestheaders`, takes such a
  stream out of the journal: nothing of it was dialled, so the Recorder writes
  nothing for it (UNRECORDED), and it is counted in the Tally instead, one
  `connection` event (`streams_reset`) per client a second.

A stream reset after its request was recorded keeps its request and error
events: the write-ahead record stands.
"""

import asyncio
import time
from collections.abc import Coroutine, Generator
from dataclasses import dataclass

import h2.errors
import h2.events
from mitmproxy import connection, http
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import HttpLayer, HTTPMode, HttpStream, RequestProtocolError
from mitmproxy.proxy.layers.http._http2 import Http2Server, StreamState

from agentlog.proxy.addons.tally import Tally

ABANDONED = "agentlog.abandoned"  # the client reset the stream or went away; mitmproxy's why
UNRECORDED = "agentlog.unrecorded"  # abandoned before it was recorded: the Recorder skips it
STREAMS_RESET, RESET_FLOOD = "streams_reset", "reset_flood"


@dataclass(slots=True)
class Window:
    """Counts over windows of `length` seconds, each starting at its first count."""

    length: float = 1.0
    start: float = float("-inf")
    count: int = 0

    def add(self, now: float) -> int:
        """Count one at `now`; return the count of its window so far."""
        if now - self.start >= self.length:
            self.start, self.count = now, 0
        self.count += 1
        return self.count


class GuardedHttp2Server(Http2Server):
    """mitmproxy's HTTP/2 server side, delivering every reset and limiting their rate."""

    def __init__(self, context: Context, guard: "StreamGuard") -> None:
        super().__init__(context)
        self.guard = guard
        self.resets = Window()
        self._ended: set[int] = set()  # streams forgotten at their end in the current read

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        yield from super()._handle_event(event)
        self._ended.clear()

    def handle_h2_event(self, event: h2.events.Event) -> Generator:
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
        if self.resets.add(time.monotonic()) <= self.guard.max_resets:
            return stop
        self.guard.reset_flood(self.context.client)
        yield from self.protocol_error(
            f"more than {self.guard.max_resets} streams reset within a second",
            h2.errors.ErrorCodes.ENHANCE_YOUR_CALM,
        )
        return True  # the rest of this read is dropped with the connection


class GuardedHttpLayer(HttpLayer):
    """mitmproxy's HTTP layer, with GuardedHttp2Server for HTTP/2 clients, noting on a
    stream's flow when its client abandons it."""

    def __init__(self, context: Context, mode: HTTPMode, guard: "StreamGuard") -> None:
        super().__init__(context, mode)
        self.guard = guard

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.Start) and self.context.client.alpn == b"h2":
            server = GuardedHttp2Server(self.context.fork(), self.guard)
            self.connections.setdefault(self.context.client, server)  # mitmproxy keeps it
        return super()._handle_event(event)

    def event_to_child(
        self, child: layer.Layer | HttpStream, event: events.Event
    ) -> layer.CommandGenerator[None]:
        if isinstance(event, RequestProtocolError) and isinstance(child, HttpStream):
            flow = getattr(child, "flow", None)  # set when its request headers arrived
            if flow is not None:
                flow.metadata.setdefault(ABANDONED, event.message)
        return super().event_to_child(child, event)


class StreamGuard:
    def __init__(self, max_resets: int, tally: Tally) -> None:
        self.max_resets = max_resets
        self.tally = tally

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        """Put a GuardedHttpLayer where mitmproxy chose its HttpLayer (alone or atop TLS)."""
        parent, chosen = None, nextlayer.layer
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

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine | None:
        """Runs before the Recorder's: a stream already abandoned is counted, not recorded.
        mitmproxy kills it as soon as the hook returns; nothing of it is dialled.

        mitmproxy starts hooks eagerly, in the middle of the read that brought the
        request's headers; an HTTP/2 read also brings other streams' frames, the
        stream's own RST_STREAM among them. So an HTTP/2 request waits one turn of the
        loop, until the rest of its read has been taken in."""
        if flow.request.is_http2:
            return self._after_read(flow)
        self._judge(flow)
        return None

    async def _after_read(self, flow: http.HTTPFlow) -> None:
        await asyncio.sleep(0)
        self._judge(flow)

    def _judge(self, flow: http.HTTPFlow) -> None:
        if ABANDONED in flow.metadata:
            flow.metadata[UNRECORDED] = True
            self.tally.add(flow.client_conn, STREAMS_RESET, None)

    def reset_flood(self, client: connection.Client) -> None:
        self.tally.add(client, RESET_FLOOD, self.max_resets)
