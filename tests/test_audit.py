"""`agentlog audit`: each flow in the captures has its journal event, or is named.

The pure parts on packets built here; the command on a real run's logs, then
on the same logs with a capture doctored to hold a flow the journal lacks.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from agentlog.audit import audit, proxy_addresses
from agentlog.capture.flows import Flow, agent_flows
from tests.conftest import proxy_args
from tests.harness import agentlog
from tests.netns import can_make_namespaces
from tests.sandbox_runs import agent_python, agentlog_run

AGENT_MAC, PROXY_MAC = b"\x02\x00\x00\x00\x00\x02", b"\x02\x00\x00\x00\x00\x01"
PCAP_HEADER = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)


def ipv4(src: str, dst: str, protocol: int, payload: bytes, mac: bytes = AGENT_MAC) -> bytes:
    def packed(address: str) -> bytes:
        return bytes(int(part) for part in address.split("."))

    header = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 64, protocol, 0)
    return b"\xff" * 6 + mac + b"\x08\x00" + header + packed(src) + packed(dst) + payload


def tcp(sport: int, dport: int, flags: int) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 0, 0, 0x50, flags, 0, 0, 0)


def udp(sport: int, dport: int) -> bytes:
    return struct.pack("!HHHH", sport, dport, 8, 0)


def pcap(path: Path, *frames: bytes, ts: int = 1_800_000_000) -> Path:
    records = b"".join(struct.pack("<IIII", ts, 0, len(f), len(f)) + f for f in frames)
    path.write_bytes(PCAP_HEADER + records)
    return path


PROXY = "10.231.0.1"
START = {
    "event": "journal",
    "action": "start",
    "listening": f"{PROXY}:8080 (regular), {PROXY}:8053 (dns), [fd00::1]:9 (transparent)",
}


def test_only_the_agents_flows_count_and_each_needs_its_event(tmp_path):
    capture = pcap(
        tmp_path / "capture_20270115_080000.pcap",
        ipv4("10.231.0.2", "192.0.2.10", 6, tcp(40000, 443, 0x02)),  # SYN: a connection
        ipv4("10.231.0.2", "192.0.2.10", 6, tcp(40000, 443, 0x10)),  # its ACK: no new flow
        ipv4("192.0.2.10", "10.231.0.2", 6, tcp(443, 40000, 0x12), mac=PROXY_MAC),
        ipv4(PROXY, "10.231.0.2", 17, udp(8053, 5353), mac=PROXY_MAC),  # teaches the MAC
        ipv4("198.51.100.1", "10.231.0.2", 17, udp(53, 41000), mac=PROXY_MAC),  # a DNS answer
        ipv4("10.231.0.2", "198.51.100.1", 17, udp(41000, 53)),  # the query
        ipv4("10.231.0.2", "10.231.0.1", 17, udp(41001, 9999)),  # dropped UDP
        ipv4("10.231.0.2", "10.231.0.1", 17, udp(41001, 9999)),
        ipv4("10.231.0.2", "10.231.0.1", 17, udp(41002, 8053)),  # DNS, asked directly
        ipv4("10.231.0.2", "10.231.0.1", 1, b"\x08\x00" + bytes(6)),  # a ping
    )
    flows = agent_flows([capture], proxy_addresses([START]))
    assert [str(f) for f in flows] == [
        "tcp 10.231.0.2:40000 -> 192.0.2.10:443",
        "udp 10.231.0.2:41000 -> 198.51.100.1:53",
        "udp 10.231.0.2:41001 -> 10.231.0.1:9999",
        "udp 10.231.0.2:41002 -> 10.231.0.1:8053",
        "icmp 10.231.0.2 -> 10.231.0.1",
    ]
    assert proxy_addresses([START]) == {PROXY, "fd00::1"}
    journal = [
        START,
        {"event": "request", "client": "10.231.0.2:40000"},
        {"event": "dns", "client": "10.231.0.2:41000"},
        {"event": "dns", "client": "10.231.0.2:41002"},
        {"event": "bypass", "protocol": "udp", "destination": PROXY, "port": 9999},
        {"event": "bypass", "protocol": "icmp", "destination": PROXY, "port": None},
    ]
    assert audit(flows, journal).ok
    for left_out in journal[1:]:
        lacking = [e for e in journal if e is not left_out]
        result = audit(flows, lacking)
        assert len(result.unaccounted) == 1, left_out


def test_a_torn_last_packet_is_left_out_and_garbage_is_bad_input(tmp_path):
    capture = pcap(tmp_path / "a.pcap", ipv4("10.231.0.2", "192.0.2.1", 6, tcp(1, 2, 0x02)))
    capture.write_bytes(capture.read_bytes() + struct.pack("<IIII", 0, 0, 99, 99) + b"cut")
    assert [f.port for f in agent_flows([capture], {PROXY})] == [2]


needs_root = pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft")

TRAFFIC = """
import os, socket
host = os.environ["HTTPS_PROXY"].split("//")[1].split(":")[0]
socket.getaddrinfo("upstream.test", 443)
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.sendto(b"x", (host, 9))
"""


@needs_root
def test_audit_passes_a_run_and_names_a_flow_slipped_into_its_captures(
    tmp_path, upstream, upstream_ca
):
    logs = tmp_path / "logs"
    result = agentlog_run(logs, proxy_args(upstream, upstream_ca[1]), *agent_python(TRAFFIC))
    assert result.returncode == 0, result.stderr
    clean = agentlog("audit", "--logs", logs)
    assert clean.returncode == 0 and clean.stdout.startswith("ok: "), clean.stdout
    # A SYN from the agent's side that no event accounts for.
    doctored = ipv4("10.231.99.2", "203.0.113.9", 6, tcp(5555, 4444, 0x02))
    pcap(logs / "capture_29991231_235959.pcap", doctored)
    caught = agentlog("audit", "--logs", logs)
    assert caught.returncode == 1
    assert "unaccounted: tcp 10.231.99.2:5555 -> 203.0.113.9:4444" in caught.stdout
    as_json = json.loads(agentlog("audit", "--logs", logs, "--json").stdout)
    assert [f["destination"] for f in as_json["unaccounted"]] == ["203.0.113.9"]
    (logs / "capture_29991231_235959.pcap").write_bytes(b"not a pcap at all, not at all")
    bad = agentlog("audit", "--logs", logs)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1


def test_flow_text_brackets_ipv6():
    flow = Flow("udp", "[fd00::2]:5", "fd00::1", 53, 0.0, "f")
    assert str(flow) == "udp [fd00::2]:5 -> [fd00::1]:53"
