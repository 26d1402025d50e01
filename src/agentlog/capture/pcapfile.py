"""The pcap format, as far as rotation and the connection index need it (pure).

A pcap file is a 24-byte global header and then records, each a 16-byte
header (seconds, sub-seconds, captured length, original length) and the
captured bytes. The byte order and time resolution come from the magic.
"""

import ipaddress
import struct
from dataclasses import dataclass

GLOBAL_HEADER_LEN = 24
RECORD_HEADER_LEN = 16
_MAGICS = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_RAW = 101


class PcapError(ValueError):
    pass


@dataclass(frozen=True)
class Format:
    header: bytes  # the global header, written at the top of every rotated file
    endian: str
    tick: float  # seconds per sub-second unit
    linktype: int

    @classmethod
    def parse(cls, header: bytes) -> "Format":
        if len(header) != GLOBAL_HEADER_LEN or header[:4] not in _MAGICS:
            raise PcapError("not a pcap stream")
        endian, tick = _MAGICS[header[:4]]
        linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
        return cls(header, endian, tick, linktype)

    def record(self, buf: bytes | memoryview, offset: int) -> tuple[float, int] | None:
        """(timestamp, total record length) of the record at `offset`, if complete."""
        if len(buf) - offset < RECORD_HEADER_LEN:
            return None
        sec, frac, caplen, _ = struct.unpack_from(self.endian + "IIII", buf, offset)
        total = RECORD_HEADER_LEN + caplen
        if len(buf) - offset < total:
            return None
        return sec + frac * self.tick, total

    def tcp_syn_source(self, packet: bytes | memoryview) -> str | None:
        """ "ip:port" of the sender if `packet` opens a TCP connection (SYN without ACK)."""
        if self.linktype == LINKTYPE_ETHERNET:
            offset, ethertype = 14, _u16(packet, 12)
            if ethertype == 0x8100:  # one VLAN tag
                offset, ethertype = 18, _u16(packet, 16)
        elif self.linktype == LINKTYPE_LINUX_SLL:
            offset, ethertype = 16, _u16(packet, 14)
        elif self.linktype == LINKTYPE_RAW:
            offset, ethertype = 0, 0x0800 if packet[:1] and packet[0] >> 4 == 4 else 0x86DD
        else:
            return None
        if ethertype == 0x0800 and len(packet) >= offset + 20:
            ihl = (packet[offset] & 0x0F) * 4
            if packet[offset + 9] != 6:
                return None
            src = ".".join(str(b) for b in packet[offset + 12 : offset + 16])
            tcp = offset + ihl
        elif ethertype == 0x86DD and len(packet) >= offset + 40:
            if packet[offset + 6] != 6:  # no extension headers on a SYN we care about
                return None
            src = f"[{ipaddress.IPv6Address(bytes(packet[offset + 8 : offset + 24]))}]"
            tcp = offset + 40
        else:
            return None
        if len(packet) < tcp + 14:
            return None
        flags = packet[tcp + 13]
        if flags & 0x02 and not flags & 0x10:
            return f"{src}:{_u16(packet, tcp)}"
        return None


def _u16(buf: bytes | memoryview, offset: int) -> int:
    return (buf[offset] << 8) | buf[offset + 1]
