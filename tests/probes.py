"""Listeners that note who reached them, and probes an agent sends, for the firewall tests.

A socket belongs to the network namespace it was made in, whichever thread
uses it later: `socket_in` makes one inside a namespace (a short-lived thread
joins it first), so the test drives the agent's side and the host's side from
one process, with no helper programs.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

SO_ORIGINAL_DST = 80
# A QUIC v1 Initial's first bytes (long header, type Initial), padded as clients do.
QUIC_INITIAL = bytes([0xC3, 0, 0, 0, 1, 8]) + os.urandom(8) + b"\x00\x00\x44\xd0" + bytes(1180)


def socket_in(namespace: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket in the named network namespace (None: this process's own)."""
    if namespace is None:
        return socket.socket(family, kind, proto)
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            with open(f"/run/netns/{namespace}") as ns:
                os.setns(ns.fileno(), os.CLONE_NEWNET)
            made.append(socket.socket(family, kind, proto))
        except BaseException as e:  # handed to the caller
            made.append(e)

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


def original_dst(conn: socket.socket) -> tuple[str, int]:
    raw = conn.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
    port, address = struct.unpack_from("!2xH4s", raw)
    return socket.inet_ntoa(address), port


class Listener:
    """TCP or UDP on host:port (port 0: any), answering `greeting` and noting every hit.

    A TCP hit is (peer, original destination); a UDP hit is (peer, payload).
    """

    def __init__(
        self,
        host: str,
        port: int = 0,
        *,
        udp: bool = False,
        greeting: bytes = b"",
        namespace: str | None = None,
    ) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        kind = socket.SOCK_DGRAM if udp else socket.SOCK_STREAM
        self.sock = socket_in(namespace, family, kind)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.port: int = self.sock.getsockname()[1]
        self.greeting = greeting
        self.hits: list[tuple[Any, Any]] = []
        self.sock.settimeout(0.1)
        if not udp:
            self.sock.listen(64)
        self._stop = threading.Event()
        serve: Callable[[], None] = self._serve_udp if udp else self._serve_tcp
        self._thread = threading.Thread(target=serve, daemon=True)
        self._thread.start()

    def _serve_tcp(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    self.hits.append((peer, original_dst(conn)))
                except OSError:
                    self.hits.append((peer, None))
                conn.sendall(self.greeting)

    def _serve_udp(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.hits.append((peer, data))
            if self.greeting:
                self.sock.sendto(self.greeting, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def tcp(namespace: str, host: str, port: int) -> bytes | str:
    """What a TCP connection from the namespace got: the peer's greeting or the error's name."""
    with socket_in(namespace, socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(3)
        try:
            s.connect((host, port))
            return s.recv(100)
        except OSError as e:
            return type(e).__name__


def udp(
    namespace: str, host: str, port: int, payload: bytes = b"probe", count: int = 1
) -> tuple[bytes, tuple[Any, ...]] | None:
    """Send count datagrams; the first answer and where it came from, or None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket_in(namespace, family, socket.SOCK_DGRAM) as s:
        for _ in range(count):
            s.sendto(payload, (host, port))
        s.settimeout(1)
        try:
            data, peer = s.recvfrom(65535)
        except TimeoutError:
            return None
        return data, peer


def ping(namespace: str, host: str) -> bool:
    """One ICMP (or ICMPv6) echo request from the namespace; True if it was answered."""
    v6 = ":" in host
    family, proto = (
        (socket.AF_INET6, socket.IPPROTO_ICMPV6) if v6 else (socket.AF_INET, socket.IPPROTO_ICMP)
    )
    ident = os.getpid() & 0xFFFF
    header = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, ident, 1) + b"agentlog"
    # The kernel fills in ICMPv6 checksums itself; ICMPv4's is ours to compute.
    packet = header if v6 else header[:2] + struct.pack("!H", _checksum(header)) + header[4:]
    with socket_in(namespace, family, socket.SOCK_RAW, proto) as s:
        s.sendto(packet, (host, 0))
        deadline = time.monotonic() + 1
        while (left := deadline - time.monotonic()) > 0:
            s.settimeout(left)
            try:
                data, _ = s.recvfrom(2048)
            except TimeoutError:
                return False
            reply = data if v6 else data[(data[0] & 0x0F) * 4 :]
            echo_reply = 129 if v6 else 0
            if reply[0] == echo_reply and struct.unpack("!H", reply[4:6])[0] == ident:
                return True
    return False


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
