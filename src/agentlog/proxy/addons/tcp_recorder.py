"""TcpRecorder: every raw TCP relay becomes a `tcp` event and one closing event.

A relay (a CONNECT tunnel or a redirected connection that carries neither
HTTP nor TLS we can read) is recorded like a request: its `tcp` event is on
disk before a byte is relayed upstream (if it cannot be written, nothing is
dialled), and it is closed by `tcp_end` (bytes and messages each way,
duration, how it ended) or, when the policy refused it, by `blocked`.
Messages are counted and dropped as they pass, so nothing piles up.

A CONNECT the client closes before sending a byte opens no relay in
mitmproxy; it is recorded here all the same, as an empty one.
"""

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from mitmproxy import connection, http, tcp
from mitmproxy.proxy import events, layer
from mitmproxy.proxy.layers import TCPLayer

from agentlog import records
from agentlog.events import TcpEndEvent, TcpEvent
from agentlog.ids import new_id
from agentlog.journal.sink import EventSink
from agentlog.journal.writer import JournalError
from agentlog.policy import Decision
from agentlog.proxy.addons import legs
from agentlog.proxy.addons.policy_gate import DECISION
from agentlog.redact import Redactor

RELAY = "agentlog.relay"
CLOSED_FIRST = "agentlog.closed_first"


@dataclass(slots=True)
class Relay:
    """What the recorder knows about one relay between hooks."""

    id: str
    started: float
    open: bool = True  # until its closing event is written (or it was never opened)
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # msgs c/s, bytes c/s


class CloseWatchingTcpLayer(TCPLayer):
    """mitmproxy's TCP relay, noting which side closed first: it has no hook for that."""

    def relay_messages(self, event: events.Event) -> layer.CommandGenerator[None]:
        if isinstance(event, events.ConnectionClosed) and self.flow is not None:
            side = "client" if event.connection is self.context.client else "server"
            self.flow.metadata.setdefault(CLOSED_FIRST, side)
        return super().relay_messages(event)


def _ms(start: float, end: float) -> float:
    return round((end - start) * 1000, 3)


class TcpRecorder:
    def __init__(
        self,
        sink: EventSink,
        redactor: Redactor,
        pcap_file: Callable[[str | None, float], str | None] | None = None,
    ) -> None:
        self.sink = sink
        self.redactor = redactor
        self.pcap_file = pcap_file
        self._relays: dict[str, tcp.TCPFlow] = {}  # open relays: closed at shutdown
        self._tunnels: dict[str, http.HTTPFlow] = {}  # accepted CONNECTs not yet carrying data

    # -- explicit CONNECT -------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        decision = flow.metadata.get(DECISION)
        if decision is None or decision.allowed:
            self._tunnels[flow.client_conn.id] = flow
            return
        start = flow.request.timestamp_start
        self._refused(flow, new_id(start), start, flow.request.host, flow.request.port, decision)

    def next_layer(self, nextlayer: layer.NextLayer) -> None:
        chosen = nextlayer.layer
        if chosen is None:
            return
        self._tunnels.pop(nextlayer.context.client.id, None)  # the tunnel carries something
        if type(chosen) is TCPLayer and chosen.flow is not None:
            nextlayer.context.layers.remove(chosen)
            nextlayer.layer = CloseWatchingTcpLayer(nextlayer.context)

    def client_disconnected(self, client: connection.Client) -> None:
        flow = self._tunnels.pop(client.id, None)
        if flow is not None:
            self._empty_tunnel(flow, "closed by client")

    def _empty_tunnel(self, flow: http.HTTPFlow, ended: str) -> None:
        """A CONNECT whose tunnel ended before a byte in it: nothing relayed, nothing dialled."""
        start = flow.request.timestamp_start
        id = new_id(start)
        self.sink.append(
            self._opening(flow, id, start, flow.request.host, flow.request.port, "allowed")
        )
        self.sink.append(self._closing(flow, Relay(id, start), ended, None, (None, None)))

    # -- the relay --------------------------------------------------------

    def tcp_start(self, flow: tcp.TCPFlow) -> Coroutine | None:
        """Sync for a refused relay; otherwise mitmproxy awaits the write-ahead."""
        relay = Relay(new_id(flow.timestamp_created), time.time())
        flow.metadata[RELAY] = relay
        server = flow.server_conn
        dialled = server.address or ("", 0)
        host, port = server.sni or dialled[0], dialled[1]
        decision = flow.metadata.get(DECISION)
        if decision is None or decision.allowed:
            return self._write_ahead(flow, relay, host, port)
        relay.open = False  # closed by its `blocked` event; PolicyGate refuses the dial
        self._refused(flow, relay.id, relay.started, host, port, decision)
        return None

    async def _write_ahead(self, flow: tcp.TCPFlow, relay: Relay, host: str, port: int) -> None:
        self._relays[relay.id] = flow  # before the await: a shutdown meanwhile closes it
        try:
            await self.sink.write_ahead(
                self._opening(flow, relay.id, relay.started, host, port, "allowed")
            )
        except JournalError as e:
            relay.open = False
            self._relays.pop(relay.id, None)  # gone already if `done` closed it meanwhile
            # Not yet dialled (mitmproxy connects after this hook): this stops it.
            flow.server_conn.error = f"agentlog: relay refused, it could not be recorded ({e})"

    def tcp_message(self, flow: tcp.TCPFlow) -> None:
        relay: Relay | None = flow.metadata.get(RELAY)
        if relay is not None:
            message = flow.messages[-1]
            side = 0 if message.from_client else 1
            relay.counts[side] += 1
            relay.counts[2 + side] += len(message.content)
        flow.messages.clear()

    def tcp_end(self, flow: tcp.TCPFlow) -> None:
        closed_first = flow.metadata.get(CLOSED_FIRST)
        self._close(flow, f"closed by {closed_first}" if closed_first else "closed", None)

    def tcp_error(self, flow: tcp.TCPFlow) -> None:
        self._close(flow, "error", flow.error.msg if flow.error else "unknown error")

    def done(self) -> None:
        """The proxy stops: relays still open are closed in the journal now."""
        for relay in list(self._relays.values()):
            self._close(relay, "proxy stopped", None)
        for tunnel in self._tunnels.values():
            self._empty_tunnel(tunnel, "proxy stopped")
        self._tunnels.clear()

    def _close(self, flow: tcp.TCPFlow, ended: str, error: str | None) -> None:
        relay: Relay | None = flow.metadata.get(RELAY)
        if relay is None or not relay.open:
            return
        relay.open = False
        self._relays.pop(relay.id, None)
        self.sink.append(self._closing(flow, relay, ended, error, legs.upstream(flow)))

    # -- events -----------------------------------------------------------

    def _refused(self, flow, id: str, ts: float, host: str, port: int, decision: Decision) -> None:
        """A relay the policy refused: its opening event, closed by `blocked`."""
        self.sink.append(self._opening(flow, id, ts, host, port, "blocked"))
        self.sink.emit(
            records.blocked_event,
            id=id,
            **legs.domain(host),
            port=port,
            rule=None if decision.rule is None else str(decision.rule),
            reason=decision.reason,
        )

    def _opening(self, flow, id: str, ts: float, host: str, port: int, decision: str) -> TcpEvent:
        client = legs.address(flow.client_conn.peername)
        return self.sink.build(
            records.tcp_event,
            id=id,
            ts=ts,
            **legs.domain(host),
            port=port,
            client=client or "",
            agent_dst=legs.agent_dst(flow),
            mode=flow.client_conn.proxy_mode.type_name,
            tls=bool(flow.client_conn.tls or flow.server_conn.tls),
            decision=decision,
            pcap_file=self.pcap_file(client, flow.client_conn.timestamp_start)
            if self.pcap_file
            else None,
        )

    def _closing(self, flow, relay: Relay, ended: str, error: str | None, legs) -> TcpEndEvent:
        msgs_c, msgs_s, bytes_c, bytes_s = relay.counts
        return self.sink.build(
            records.tcp_end_event,
            id=relay.id,
            ended=ended,
            error=error,
            messages_from_client=msgs_c,
            messages_from_server=msgs_s,
            bytes_from_client=bytes_c,
            bytes_from_server=bytes_s,
            duration_ms=_ms(relay.started, time.time()),
            upstream=legs,
            redactor=self.redactor,
        )
