"""HeadLimitedHttp1Server: an HTTP/1 client cannot make the proxy hold more than `limit`
bytes it has not yet parsed into a request.

mitmproxy buffers an HTTP/1 request head until it ends, however long it gets
(its own comment: "FIXME: protect against header size DoS"), and, while a
request is being answered, whatever the client sends after it. A client
sending one header line without end at loopback speed grew the proxy by
5.7 GB within the 10 s header timeout. Here a head still incomplete past
`limit` bytes gets a 431 and the connection is closed (after dropping up to
`limit` more bytes, so that a client still sending reads the 431); so is a connection
that piles up more than `limit` bytes behind the request being answered. The
request was never recorded (its head never ended), so nothing was dialled;
the cut-off is counted by the StreamGuard (`header_too_large`).
"""

from collections.abc import Callable

from h11._receivebuffer import ReceiveBuffer
from mitmproxy import connection
from mitmproxy.proxy import commands, events, layer
from mitmproxy.proxy.context import Context
from mitmproxy.proxy.layers.http import ErrorCode, ReceiveHttp, RequestProtocolError
from mitmproxy.proxy.layers.http._http1 import Http1Server


def too_large(limit: int) -> bytes:
    body = f"agentlog: request headers larger than {limit} bytes: refused\n".encode()
    head = (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: text/plain; charset=utf-8\r\n"
        "x-agentlog: refused\r\n"
        "connection: close\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class HeadLimitedHttp1Server(Http1Server):
    def __init__(
        self, context: Context, limit: int, refused: Callable[[connection.Client], None]
    ) -> None:
        super().__init__(context)
        self.limit = limit
        self.refused = refused
        self.dropping: int | None = None  # once the 431 is sent: bytes still to drop unread

    def _handle_event(self, event: events.Event) -> layer.CommandGenerator[None]:
        if self.dropping is not None:
            if isinstance(event, events.DataReceived):
                self.dropping -= len(event.data)
            if self.dropping < 0 or isinstance(event, events.ConnectionClosed):
                self.dropping = 0
                yield commands.CloseConnection(self.conn)
            return
        yield from super()._handle_event(event)
        if len(self.buf) <= self.limit:
            return
        head_open = self.state == self.read_headers  # a head that has not ended
        if not head_open and self.state != self.wait:
            return  # a body or a relay: mitmproxy streams those through
        self.buf = ReceiveBuffer()
        self.state = self.done
        self.refused(self.context.client)
        if head_open:
            # Closed for writing only, so that the client reads the 431 before a reset; up
            # to `limit` more of its bytes are dropped while it does, then it is closed.
            self.dropping = self.limit
            yield commands.SendData(self.conn, too_large(self.limit))
            yield commands.CloseTcpConnection(self.conn, half_close=True)
        else:  # the request being answered fails, as if its client had gone
            yield commands.CloseConnection(self.conn)
            yield ReceiveHttp(
                RequestProtocolError(
                    self.stream_id,
                    f"agentlog: client sent over {self.limit} bytes ahead of its response",
                    ErrorCode.CLIENT_DISCONNECTED,
                )
            )
