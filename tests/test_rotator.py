"""The rotator: a pcap stream in, rotated files and a SYN index out (no capture needed)."""

from __future__ import annotations

import struct
import subprocess

from hypothesis import given, settings
from hypothesis import strategies as st

from agentlog.capture.pcapfile import Format
from agentlog.capture.rotator import Rotator

GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)  # Ethernet


def tcp_packet(src: str, sport: int, flags: int, payload: bytes = b"") -> bytes:
    ip_src = bytes(int(x) for x in src.split("."))
    tcp = struct.pack("!HHIIBBHHH", sport, 443, 0, 0, 5 << 4, flags, 65535, 0, 0) + payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), 0, 0, 64, 6, 0, ip_src, bytes([10, 0, 0, 1])
    )
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + ip + tcp


def record(ts: float, packet: bytes) -> bytes:
    return struct.pack("<IIII", int(ts), int(ts % 1 * 1e6), len(packet), len(packet)) + packet


def test_syn_source_only_for_a_connection_start():
    fmt = Format.parse(GLOBAL)
    syn = tcp_packet("10.9.8.7", 40000, 0x02)
    assert fmt.tcp_syn_source(syn, 0, len(syn)) == "10.9.8.7:40000"
    for flags in (0x12, 0x10, 0x18):  # SYN-ACK, ACK, PSH-ACK
        other = tcp_packet("10.9.8.7", 40000, flags)
        assert fmt.tcp_syn_source(other, 0, len(other)) is None
    assert fmt.tcp_syn_source(syn[:30], 0, 30) is None  # cut short: no guess


@settings(max_examples=25, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.binary(max_size=1500)), min_size=1, max_size=60),
    st.integers(1, 9000),
)
def test_every_packet_lands_in_exactly_one_file(tmp_path_factory, packets, chunk):
    directory = tmp_path_factory.mktemp("rot")
    reports: list[str] = []
    rotator = Rotator(directory, max_bytes=4000, max_seconds=3600, report=reports.append)
    stream = GLOBAL + b"".join(
        record(
            1_700_000_000 + i * 0.001,
            tcp_packet("10.0.0.2", 1000 + i, 0x02 if kind == 0 else 0x10, payload),
        )
        for i, (kind, payload) in enumerate(packets)
    )
    buf = bytearray()
    for i in range(0, len(stream), chunk):  # arbitrary read boundaries, as from a pipe
        buf += stream[i : i + chunk]
        del buf[: rotator.feed(buf)]
    rotator.close()
    files = sorted(directory.glob("capture_*.pcap"))
    opened = [r.split()[1] for r in reports if r.startswith("open ")]
    assert sorted(opened) == [f.name for f in files]
    counts = [
        len(
            subprocess.run(
                ["tcpdump", "-nr", f], capture_output=True, text=True, check=True
            ).stdout.splitlines()
        )
        for f in files
    ]
    assert sum(counts) == len(packets)
    syns = [r.split()[1] for r in reports if r.startswith("syn ")]
    assert syns == [f"10.0.0.2:{1000 + i}" for i, (k, _) in enumerate(packets) if k == 0]
    for f in files:
        assert (
            f.stat().st_size <= 4000
            or len(
                list(
                    subprocess.run(
                        ["tcpdump", "-nr", f], capture_output=True, text=True
                    ).stdout.splitlines()
                )
            )
            == 1
        )
