"""ConnectionGuard: a client connection holds a socket only while it is being used (slowloris).

mitmproxy closes a connection only after `tcp_timeout` (600 s) without a byte,
so a client that trickles a request head, or never finishes one, keeps its
socket, and a file descriptor, for as long as it likes: 1,114 of them once
took every descriptor the proxy had. Here a connection gets `header_timeout`
to complete its request headers (from its start, and again after a CONNECT,
which covers the TLS handshake in the tunnel), and `idle_timeout` with no
exchange under way before it is closed. An exchange under way (a slow
upstream, a long SSE stream) is never cut, nor a raw TCP relay or a WebSocket
(mitmproxy's own inactivity timeout still applies to those). No client
address may hold more than `max_client_connections` at once; past that its
new connections are closed unread. Each cut-off is counted in the Tally.
"""

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from mitmproxy import connection, ctx, http, tcp

from agentlog.config import Limits
from agentlog.proxy.addons.tally import Tally, client_address

REFUSED, HEADER_TIMEOUT, IDLE_TIMEOUT = "refused", "header_timeout", "idle_timeout"
EXCHANGE = "agentlog.exchange"  # flow metadata: counted as under way on its connection


def close_client(client: connection.Client) -> None:
    """Close a client connection from outside its layers, as mitmproxy's own shutdown does."""
    handler = ctx.master.addons.get("proxyserver").connections.get(client.id)
    if handler is None:
        return
    io = handler.transports.get(handler.client)
    if io is not None and io.handler is not None:
        handler.close_connection(handler.client)


@dataclass(slots=True)
class Watch:
    """One client connection: its exchanges under way and the deadline it is held to."""

    client: connection.Client
    exchanges: int = 0
    deadline: asyncio.TimerHandle | None = None
    exempt: bool = False  # a relay or a WebSocket: long-lived by nature


class ConnectionGuard:
    def __init__(
        self,
        limits: Limits,
        tally: Tally,
        close: Callable[[connection.Client], None] = close_client,
    ) -> None:
        self.limits = limits
        self.tally = tally
        self.close = close
        self._watches: dict[str, Watch] = {}  # client connection id -> its watch
        self._open: dict[str, int] = {}  # client address -> connections open

    # -- connections --------------------------------------------------------

    def client_connected(self, client: connection.Client) -> None:
        address = client_address(client)
        self._open[address] = self._open.get(address, 0) + 1
        cap = self.limits.max_client_connections
        if self._open[address] > cap:
            # mitmproxy closes it before reading a byte; client_disconnected still follows.
            client.error = f"agentlog: {address} has {cap} connections open already"
            self.tally.add(client, REFUSED, cap)
            return
        watch = self._watches[client.id] = Watch(client)
        self._arm(watch, HEADER_TIMEOUT, self.limits.header_timeout)

    def client_disconnected(self, client: connection.Client) -> None:
        address = client_address(client)
        left = self._open.get(address, 1) - 1
        if left > 0:
            self._open[address] = left
        else:
            self._open.pop(address, None)
        watch = self._watches.pop(client.id, None)
        if watch is not None:
            self._disarm(watch)

    # -- exchanges ----------------------------------------------------------

    def http_connect(self, flow: http.HTTPFlow) -> None:
        """The CONNECT's headers are complete; the tunnel's first request gets the same time."""
        watch = self._watches.get(flow.client_conn.id)
        if watch is not None and not watch.exchanges:
            self._arm(watch, HEADER_TIMEOUT, self.limits.header_timeout)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        watch = self._watches.get(flow.client_conn.id)
        if watch is None:
            return
        flow.metadata[EXCHANGE] = True
        watch.exchanges += 1
        self._disarm(watch)

    def response(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        self._ended(flow)

    def _ended(self, flow: http.HTTPFlow) -> None:
        if flow.metadata.pop(EXCHANGE, None) is None:
            return  # not counted (a CONNECT, an invalid request) or already ended
        watch = self._watches.get(flow.client_conn.id)
        if watch is None:
            return
        watch.exchanges -= 1
        if not watch.exchanges and not watch.exempt:
            self._arm(watch, IDLE_TIMEOUT, self.limits.idle_timeout)

    def websocket_start(self, flow: http.HTTPFlow) -> None:
        self._exempt(flow.client_conn.id)

    def tcp_start(self, flow: tcp.TCPFlow) -> None:
        self._exempt(flow.client_conn.id)

    def _exempt(self, client_id: str) -> None:
        watch = self._watches.get(client_id)
        if watch is not None:
            watch.exempt = True
            self._disarm(watch)

    # -- deadlines ----------------------------------------------------------

    def _arm(self, watch: Watch, action: str, seconds: float) -> None:
        self._disarm(watch)
        loop = asyncio.get_running_loop()
        watch.deadline = loop.call_later(seconds, self._expired, watch, action, seconds)

    @staticmethod
    def _disarm(watch: Watch) -> None:
        if watch.deadline is not None:
            watch.deadline.cancel()
            watch.deadline = None

    def _expired(self, watch: Watch, action: str, seconds: float) -> None:
        watch.deadline = None
        self.tally.add(watch.client, action, seconds)
        self.close(watch.client)
