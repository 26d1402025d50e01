"""DNS on the wire with the standard library only: a query, and what an answer says.

Self-contained on purpose: tests inside a sandbox run this file's source with
the system's python3, as the agent would.
"""

from __future__ import annotations

import socket
import struct

TYPES = {"A": 1, "CNAME": 5, "TXT": 16, "AAAA": 28, "HTTPS": 65}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


def query(name: str, qtype: str = "A", ident: int = 0x1234) -> bytes:
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)  # recursion desired
    labels = b"".join(bytes([len(p)]) + p for p in name.encode().split(b".") if p)
    return header + labels + b"\0" + struct.pack("!HH", TYPES[qtype], 1)


def _skip_name(data: bytes, offset: int) -> int:
    while True:
        length = data[offset]
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length
        if length == 0:
            return offset


def answer(data: bytes) -> tuple[int, str, list[str]]:
    """(id, rcode, addresses of the A and AAAA records)."""
    ident, flags, qd, an, _, _ = struct.unpack_from("!HHHHHH", data)
    offset = 12
    for _ in range(qd):
        offset = _skip_name(data, offset) + 4
    found = []
    for _ in range(an):
        offset = _skip_name(data, offset)
        rtype, _, _, length = struct.unpack_from("!HHIH", data, offset)
        offset += 10
        rdata = data[offset : offset + length]
        offset += length
        if rtype == 1:
            found.append(socket.inet_ntop(socket.AF_INET, rdata))
        elif rtype == 28:
            found.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return ident, RCODES.get(flags & 0xF, str(flags & 0xF)), found


def ask_udp(server: tuple[str, int], packet: bytes, timeout: float = 3) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(packet, server)
        try:
            return s.recv(65535)
        except TimeoutError:
            return None


def ask_tcp(server: tuple[str, int], packet: bytes, timeout: float = 3) -> bytes | None:
    with socket.create_connection(server, timeout=timeout) as s:
        s.sendall(struct.pack("!H", len(packet)) + packet)
        head = s.recv(2)
        if len(head) < 2:
            return None
        (size,) = struct.unpack("!H", head)
        data = b""
        while len(data) < size:
            chunk = s.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data
