"""The flows an agent started, read from the capture files (pure but for reading them).

A flow is what one journal event should account for: a TCP connection (its
SYN), a UDP flow (its first datagram per source port and destination), an
ICMP or other IP flow (per protocol and destination). Packets from the proxy
side start nothing: only the agent's count. On Ethernet the proxy side is
told by its MAC address (learnt from its ARP and IPv4 packets, whose
addresses are `proxy_addresses`), so that answers it sends with the address
the agent asked (un-NATed DNS replies) and its own IPv6 chatter are not taken
for the agent's; elsewhere by the source address. A packet from `::` (IPv6
duplicate address detection) starts nothing either, nor does the link's own
IPv6 housekeeping: neighbour discovery and multicast listener reports (ICMPv6
types 130-143, or behind a hop-by-hop header) from a link-local address to a
link-scope group. Every IPv6 interface on the link sends those (a Docker
network's bridge on the host does), and an unprivileged agent cannot: it
takes a raw socket (CAP_NET_RAW).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from agentlog.capture.pcapfile import (
    GLOBAL_HEADER_LEN,
    LINKTYPE_ETHERNET,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_RAW,
    RECORD_HEADER_LEN,
    Format,
    PcapError,
)

# The names nftables gives protocols (what bypass events say).
PROTOCOLS = {
    1: "icmp",
    6: "tcp",
    17: "udp",
    33: "dccp",
    58: "ipv6-icmp",
    132: "sctp",
    136: "udplite",
}
_PORTED = {6, 17, 33, 132, 136}


@dataclass(frozen=True)
class Flow:
    protocol: str
    source: str  # address, or address:port ("[v6]:port")
    destination: str
    port: int | None
    first_seen: float
    file: str

    def __str__(self) -> str:
        dst = f"[{self.destination}]" if ":" in self.destination else self.destination
        where = dst if self.port is None else f"{dst}:{self.port}"
        return f"{self.protocol} {self.source} -> {where}"


@dataclass(frozen=True)
class Packet:
    protocol: int
    source: str
    destination: str
    sport: int | None
    dport: int | None
    syn: bool  # a TCP SYN without ACK
    mac: bytes | None = None  # the Ethernet source
    icmp_type: int | None = None  # ICMPv6's

    @property
    def link_housekeeping(self) -> bool:
        """Neighbour discovery or MLD, link-local to a link-scope group (see the docstring)."""
        kernel_only = self.protocol == 0 or (
            self.protocol == 58 and self.icmp_type is not None and 130 <= self.icmp_type <= 143
        )
        return (
            kernel_only
            and ipaddress.IPv6Address(self.source).is_link_local
            and self.destination.startswith("ff02:")
        )


def arp_sender(frame: bytes, linktype: int) -> tuple[bytes, str] | None:
    """(MAC, IPv4 address) of an Ethernet ARP packet's sender (pure)."""
    if linktype != LINKTYPE_ETHERNET or len(frame) < 42 or frame[12:14] != b"\x08\x06":
        return None
    return frame[22:28], str(ipaddress.IPv4Address(frame[28:32]))


def packets(path: Path) -> Iterator[tuple[float, bytes, int]]:
    """(time, bytes, linktype) of every whole record of a pcap file; PcapError if it is none."""
    data = path.read_bytes()
    try:
        fmt = Format.parse(data[:GLOBAL_HEADER_LEN])
    except PcapError as e:
        raise PcapError(f"{path}: {e}") from None
    offset = GLOBAL_HEADER_LEN
    while offset + RECORD_HEADER_LEN <= len(data):
        seconds, sub, length, _ = fmt.record_header.unpack_from(data, offset)
        start = offset + RECORD_HEADER_LEN
        if start + length > len(data):
            return  # torn by a crash: the packets before it stand
        yield seconds + sub * fmt.tick, data[start : start + length], fmt.linktype
        offset = start + length


def parse(frame: bytes, linktype: int) -> Packet | None:
    """The IP header fields of one captured frame (pure); None if it is not IP."""
    if linktype == LINKTYPE_ETHERNET and len(frame) >= 14:
        ip, ethertype = 14, struct.unpack_from("!H", frame, 12)[0]
        if ethertype == 0x8100 and len(frame) >= 18:
            ip, ethertype = 18, struct.unpack_from("!H", frame, 16)[0]
    elif linktype == LINKTYPE_LINUX_SLL and len(frame) >= 16:
        ip, ethertype = 16, struct.unpack_from("!H", frame, 14)[0]
    elif linktype == LINKTYPE_RAW and frame:
        ip, ethertype = 0, 0x0800 if frame[0] >> 4 == 4 else 0x86DD
    else:
        return None
    if ethertype == 0x0800 and len(frame) >= ip + 20:
        protocol, l4 = frame[ip + 9], ip + (frame[ip] & 0x0F) * 4
        source = str(ipaddress.IPv4Address(frame[ip + 12 : ip + 16]))
        destination = str(ipaddress.IPv4Address(frame[ip + 16 : ip + 20]))
    elif ethertype == 0x86DD and len(frame) >= ip + 40:
        protocol, l4 = frame[ip + 6], ip + 40
        source = str(ipaddress.IPv6Address(frame[ip + 8 : ip + 24]))
        destination = str(ipaddress.IPv6Address(frame[ip + 24 : ip + 40]))
    else:
        return None
    sport = dport = None
    syn = False
    if protocol in _PORTED and len(frame) >= l4 + 4:
        sport, dport = struct.unpack_from("!HH", frame, l4)
        syn = protocol == 6 and len(frame) >= l4 + 14 and frame[l4 + 13] & 0x12 == 0x02
    mac = frame[6:12] if linktype == LINKTYPE_ETHERNET else None
    icmp_type = frame[l4] if ethertype == 0x86DD and protocol == 58 and len(frame) > l4 else None
    return Packet(protocol, source, destination, sport, dport, syn, mac, icmp_type)


def _address(host: str, port: int | None) -> str:
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def proxy_macs(captures: Iterable[Path], proxy_addresses: set[str]) -> set[bytes]:
    """The MAC addresses the proxy side sends from."""
    found: set[bytes] = set()
    for path in captures:
        for _, frame, linktype in packets(path):
            if (sender := arp_sender(frame, linktype)) and sender[1] in proxy_addresses:
                found.add(sender[0])
            elif (packet := parse(frame, linktype)) and packet.source in proxy_addresses:
                found |= {packet.mac} if packet.mac is not None else set()
    return found


def agent_flows(captures: list[Path], proxy_addresses: set[str]) -> list[Flow]:
    """Every flow started from the agent's side, in capture order."""
    ours = proxy_macs(captures, proxy_addresses)
    return list(_flows(captures, proxy_addresses, ours).values())


def _flows(captures: list[Path], proxy: set[str], ours: set[bytes]) -> dict[tuple, Flow]:
    seen: dict[tuple, Flow] = {}
    for path in captures:
        for ts, frame, linktype in packets(path):
            packet = parse(frame, linktype)
            if packet is None or packet.source in proxy or packet.source == "::":
                continue
            if ":" in packet.source and packet.link_housekeeping:
                continue
            if packet.mac is not None and packet.mac in ours:
                continue
            if packet.protocol == 6 and not packet.syn:
                continue  # only a SYN opens a TCP connection
            name = PROTOCOLS.get(packet.protocol, str(packet.protocol))
            if packet.dport is not None:
                key: tuple = (name, packet.source, packet.sport, packet.destination, packet.dport)
            else:
                key = (name, packet.source, packet.destination)
            if key not in seen:
                source = _address(packet.source, packet.sport)
                seen[key] = Flow(name, source, packet.destination, packet.dport, ts, path.name)
    return seen
