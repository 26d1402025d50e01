"""Recorder: every exchange becomes journal events, the request one written ahead.

A request whose body fits the cap (or has none) is held until complete, so
its event carries the body; any other is streamed, its event written at the
headers and its body accounted for in the closing event. Either way the
request event is on disk before a byte goes upstream; if it cannot be
written, the agent gets a 503 and nothing is forwarded. Responses stream
through a BodyTee that keeps the first `body_cap` bytes, all but the small
ones of known length, which are forwarded whole as soon as they are complete.
"""

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from mitmproxy import connection, http, tls, websocket

from agentlog import events, records
from agentlog.ids import new_id
from agentlog.journal.bodies import Body
from agentlog.journal.sink import EventSink
from agentlog.journal.writer import JournalError
from agentlog.proxy.addons import legs
from agentlog.proxy.addons.policy_gate import DECISION
from agentlog.proxy.addons.tee import BodyTee
from agentlog.redact import Redactor

STATE = "agentlog.state"
# A response body of known length up to this size is forwarded whole: it is in
# flight in a few packets anyway. Anything else (SSE, chunked, downloads) streams.
FORWARD_WHOLE_UP_TO = 64 * 1024


@dataclass(slots=True)
class FlowState:
    """What the recorder knows about one exchange between hooks."""

    id: str
    secrets: set[str] = field(default_factory=set)  # from headers and URL (event loop)
    body_secrets: set[str] = field(default_factory=set)  # grows in the writer thread
    request_recorded: bool = False  # its event is written (or queued, for blocked/error)
    synthetic: bool = False  # the response is ours (blocked, refused), not upstream's
    closed: bool = False  # its closing event is written (`blocked`): nothing may follow
    request_tee: BodyTee | None = None
    response_tee: BodyTee | None = None
    ws_counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # msgs c/s, bytes c/s


def _ms(start: float | None, end: float | None) -> float | None:
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)


def holds_request_body(request: http.Request, cap: int) -> bool:
    """True when the body may be held until complete: known to fit the cap, or absent.

    An HTTP/1 request without Content-Length or chunked encoding has no body. An
    HTTP/2 one may still carry one of any size, so it streams, even a GET: its
    size then arrives with the closing event."""
    length = request.headers.get("content-length")
    if length is not None:
        return length.isdigit() and int(length) <= cap
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        return False
    return request.http_version.startswith("HTTP/1")


class Recorder:
    def __init__(
        self,
        sink: EventSink,
        redactor: Redactor,
        body_cap: int,
        pcap_file: Callable[[str | None, float], str | None] | None = None,
    ) -> None:
        self.sink = sink
        self.redactor = redactor
        self.body_cap = body_cap
        self.pcap_file = pcap_file

    # -- requests ---------------------------------------------------------

    def requestheaders(self, flow: http.HTTPFlow) -> Coroutine | None:
        """Sync, except for a streamed request: mitmproxy awaits what a hook returns."""
        state = FlowState(id=new_id(flow.request.timestamp_start))
        flow.metadata[STATE] = state
        decision = flow.metadata.get(DECISION)
        if decision is not None and not decision.allowed:
            state.synthetic = state.closed = True
            self.sink.append(*self._request_event(flow, state, "blocked", None, None))
            state.request_recorded = True
            self.sink.emit(
                records.blocked_event,
                id=state.id,
                **legs.domain(flow.request.pretty_host),
                port=flow.request.port,
                rule=None if decision.rule is None else str(decision.rule),
                reason=decision.reason,
            )
            return None
        if holds_request_body(flow.request, self.body_cap):
            return None  # recorded at `request`, body and all
        return self._stream_request(flow, state)

    async def _stream_request(self, flow: http.HTTPFlow, state: FlowState) -> None:
        if await self._write_ahead(flow, state, body=None, body_size=None):
            state.request_tee = BodyTee(self.body_cap)
            flow.request.stream = state.request_tee

    async def request(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        if state is None or state.request_recorded or state.synthetic:
            return
        content = flow.request.raw_content or b""
        await self._write_ahead(flow, state, body=content[: self.body_cap], body_size=len(content))

    def _request_event(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        decision: str,
        body: bytes | None,
        body_size: int | None,
    ):
        req = flow.request
        client = legs.address(flow.client_conn.peername)
        event, state.secrets = self.sink.build(
            records.request_event,
            id=state.id,
            ts=req.timestamp_start,
            method=req.method,
            scheme=req.scheme,
            **legs.domain(req.pretty_host),
            port=req.port,
            path=req.path,
            http_version=req.http_version,
            headers=req.headers.items(multi=True),
            client=client or "",
            agent_dst=legs.agent_dst(flow),
            mode=flow.client_conn.proxy_mode.type_name,
            decision=decision,
            request_bytes=body_size,
            request_body_truncated=body_size is not None and body_size > self.body_cap,
            pcap_file=self.pcap_file(client, flow.client_conn.timestamp_start)
            if self.pcap_file
            else None,
            redactor=self.redactor,
        )
        state.body_secrets.update(state.secrets)  # before the writer thread first sees it
        bodies = {"request_body": self._body(req, body, state)} if body else {}
        return event, bodies

    async def _write_ahead(
        self, flow: http.HTTPFlow, state: FlowState, body: bytes | None, body_size: int | None
    ) -> bool:
        try:
            await self.sink.write_ahead(
                *self._request_event(flow, state, "allowed", body, body_size)
            )
        except JournalError as e:
            state.synthetic = True
            flow.response = http.Response.make(
                503,
                f"agentlog: request refused, it could not be recorded ({e})\n",
                {"content-type": "text/plain; charset=utf-8", "x-agentlog": "refused"},
            )
            return False
        state.request_recorded = True
        return True

    # -- responses --------------------------------------------------------

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        if state is None or state.synthetic or flow.response is None:
            return
        length = flow.response.headers.get("content-length", "")
        if length.isdigit() and int(length) <= FORWARD_WHOLE_UP_TO:
            return  # small and complete: one write is cheaper than a stream, and as prompt
        state.response_tee = BodyTee(self.body_cap)
        flow.response.stream = state.response_tee

    def response(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        if state is None or state.synthetic or flow.response is None:
            return
        resp = flow.response
        tee = state.response_tee
        if tee is not None and tee.size:
            data, size, truncated = bytes(tee.kept), tee.size, tee.truncated
        else:  # not streamed: the body ended with the headers
            data = resp.raw_content or b""
            size, truncated = len(data), len(data) > self.body_cap
            data = data[: self.body_cap]
        event = self.sink.build(
            records.response_event,
            id=state.id,
            status=resp.status_code,
            reason=resp.reason,
            http_version=resp.http_version,
            headers=resp.headers.items(multi=True),
            response_bytes=size,
            response_body_truncated=truncated,
            ttfb_ms=_ms(flow.request.timestamp_start, resp.timestamp_start),
            upstream=legs.upstream(flow),
            duration_ms=_ms(flow.request.timestamp_start, resp.timestamp_end or time.time()),
            redactor=self.redactor,
            known=state.secrets,
        )
        # The response headers' secrets scrub its body too. The writer thread is
        # not using this set now: the request's body, if held, was written
        # ahead, and a streamed one only goes out with the entry appended below.
        state.body_secrets.update(state.secrets)
        bodies: dict[str, Body] = {}
        self._close_streamed_request(flow, state, event, bodies)  # first: its secrets count
        if data:
            bodies["response_body"] = self._body(resp, data, state)
        self.sink.append(event, bodies)

    def error(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        # A blocked request is closed; mitmproxy still reports the agent hanging up
        # while it reads the body before the 403, or a request failing its checks.
        if state is None or state.closed:
            return
        if not state.request_recorded:  # failed before the request was written
            self.sink.append(*self._request_event(flow, state, "allowed", None, None))
            state.request_recorded = True
        tee = state.response_tee
        event = self.sink.build(
            records.error_event,
            id=state.id,
            error=flow.error.msg if flow.error else "unknown error",
            stage="response" if flow.response is not None else "request",
            response_bytes=tee.size if tee else None,
            upstream=legs.upstream(flow),
            redactor=self.redactor,
            known=state.secrets,
        )
        bodies: dict[str, Body] = {}
        self._close_streamed_request(flow, state, event, bodies)
        self.sink.append(event, bodies)

    def _close_streamed_request(
        self,
        flow: http.HTTPFlow,
        state: FlowState,
        event: events.ResponseEvent | events.ErrorEvent,
        bodies: dict[str, Body],
    ) -> None:
        tee = state.request_tee
        if tee is None:
            return
        event.update(records.streamed_request_body(tee.size, tee.truncated))
        if tee.kept:
            bodies["request_body"] = self._body(flow.request, bytes(tee.kept), state)

    def _body(self, message: http.Message, data: bytes, state: FlowState) -> Body:
        return Body(
            data,
            message.headers.get("content-type", ""),
            message.headers.get("content-encoding", ""),
            state.body_secrets,
        )

    # -- WebSocket: counted, never piled up in memory ---------------------

    def websocket_message(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        assert flow.websocket is not None
        if state is not None:
            message = flow.websocket.messages[-1]
            side = 0 if message.from_client else 1
            state.ws_counts[side] += 1
            state.ws_counts[2 + side] += len(message.content)
        flow.websocket.messages.clear()

    def websocket_end(self, flow: http.HTTPFlow) -> None:
        state: FlowState | None = flow.metadata.get(STATE)
        ws: websocket.WebSocketData | None = flow.websocket
        if state is None or ws is None:
            return
        msgs_c, msgs_s, bytes_c, bytes_s = state.ws_counts
        self.sink.emit(
            records.websocket_event,
            id=state.id,
            messages_from_client=msgs_c,
            messages_from_server=msgs_s,
            bytes_from_client=bytes_c,
            bytes_from_server=bytes_s,
            close_code=ws.close_code,
            close_reason=ws.close_reason or "",
            redactor=self.redactor,
        )

    # -- TLS: a client that refuses our certificate -------------------------

    def tls_failed_client(self, data: tls.TlsData) -> None:
        client: connection.Client = data.context.client
        server = data.context.server
        self.sink.emit(
            records.tls_failed_event,
            client=legs.address(client.peername) or "",
            **legs.domain(client.sni or (server.address[0] if server.address else None)),
            port=server.address[1] if server.address else None,
            error=data.conn.error or "TLS handshake failed",
            redactor=self.redactor,
        )
