"""A raw asyncio HTTP/1.1 server whose every response dies with a TCP RST.

For any request it sends ``200`` headers announcing ``Content-Length: 1000000``,
then ~10 KB of body, waits until the peer has ACKed those bytes (so the RST does
not discard them), sets ``SO_LINGER`` to 0 and aborts: the kernel sends RST
instead of FIN, and with TLS no close_notify is sent either.
"""

from __future__ import annotations

import asyncio
import fcntl
import socket
import ssl
import struct
import termios
from collections import Counter
from urllib.parse import urlsplit

ANNOUNCED_LENGTH = 1_000_000
SENT_BYTES = 10 * 1024
_MAX_HEAD = 64 * 1024
_ACK_WAIT_POLLS = 2000  # x 1 ms; loopback ACKs arrive within the 40 ms delayed-ACK window


class ResetHandler:
    def __init__(self, hits: Counter[str]) -> None:
        self.hits = hits

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
        target = request_line[1] if len(request_line) == 3 else "/"
        self.hits[urlsplit(target).path] += 1
        writer.write(
            b"HTTP/1.1 200 OK\r\n"
            b"Content-Type: application/octet-stream\r\n"
            + f"Content-Length: {ANNOUNCED_LENGTH}\r\n\r\n".encode()
            + b"x" * SENT_BYTES
        )
        await writer.drain()
        await _wait_until_acked(writer)
        if writer.transport.is_closing():  # FakeUpstream.stop() got there first
            return
        sock: socket.socket = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()


async def _wait_until_acked(writer: asyncio.StreamWriter) -> None:
    """Poll the kernel send queue (unsent + unacked bytes, SIOCOUTQ) until empty."""
    sock: socket.socket = writer.get_extra_info("socket")
    outq = bytearray(4)
    for _ in range(_ACK_WAIT_POLLS):
        if writer.transport.is_closing():
            return
        fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, outq)
        if struct.unpack("i", outq)[0] == 0:
            return
        await asyncio.sleep(0.001)


async def start_reset_server(
    sock: socket.socket, hits: Counter[str], ssl_context: ssl.SSLContext | None
) -> asyncio.Server:
    return await asyncio.start_server(
        ResetHandler(hits), sock=sock, ssl=ssl_context, limit=_MAX_HEAD
    )
