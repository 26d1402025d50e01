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
    record_header: struct.Struct  # seconds, sub-seconds, captured length, original length
    tick: float  # seconds per sub-second unit
    linktype: int

    @classmethod
    def parse(cls, header: bytes) -> "Format":
        if len(header) != GLOBAL_HEADER_LEN or header[:4] not in _MAGICS:
            raise PcapError("not a pcap stream")
        endian, tick = _MAGICS[header[:4]]
        linktype = struct.unpack(endian + "I", header[20:24])[0] & 0x0FFFFFFF
        return cls(header, struct.Struct(endian + "IIII"), tick, linktype)

    def tcp_syn_source(self, buf: bytes | bytearray, start: int, end: int) -> str | None:
        """ "ip:port" of the sender if the packet in buf[start:end] opens a TCP
        connection (SYN without ACK). Runs for every packet: no slicing, no copies."""
        if self.linktype == LINKTYPE_ETHERNET:
            ip, ethertype = start + 14, _u16(buf, start + 12) if end - start >= 14 else 0
            if ethertype == 0x8100 and end - start >= 18:  # one VLAN tag
                ip, ethertype = start + 18, _u16(buf, start + 16)
        elif self.linktype == LINKTYPE_LINUX_SLL:
            ip, ethertype = start + 16, _u16(buf, start + 14) if end - start >= 16 else 0
        elif self.linktype == LINKTYPE_RAW and end > start:
            ip, ethertype = start, 0x0800 if buf[start] >> 4 == 4 else 0x86DD
        else:
            return None
        if ethertype == 0x0800 and end - ip >= 20 and buf[ip + 9] == 6:
            tcp = ip + (buf[ip] & 0x0F) * 4
            if end - tcp >= 14 and buf[tcp + 13] & 0x12 == 0x02:
                return (
                    f"{buf[ip + 12]}.{buf[ip + 13]}.{buf[ip + 14]}.{buf[ip + 15]}:{_u16(buf, tcp)}"
                )
        elif ethertype == 0x86DD and end - ip >= 54 and buf[ip + 6] == 6:
            # No extension headers: a SYN carries none in practice.
            tcp = ip + 40
            if buf[tcp + 13] & 0x12 == 0x02:
                return f"[{ipaddress.IPv6Address(bytes(buf[ip + 8 : ip + 24]))}]:{_u16(buf, tcp)}"
        return None


def _u16(buf: bytes | bytearray, offset: int) -> int:
    return (buf[offset] << 8) | buf[offset + 1]
