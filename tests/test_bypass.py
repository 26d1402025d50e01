"""The pure parts of the sandbox: reading the firewall's counts, diffing them, naming, subnets."""

from __future__ import annotations

import asyncio
import os
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentlog.sandbox import netns
from agentlog.sandbox.bypass import (
    UNRECORDED_FLOW_KEY,
    Bypass,
    BypassPoller,
    Count,
    flows,
    new_bypasses,
)
from agentlog.sandbox.firewall import FirewallError

# `nft -j list table inet T` as nftables 1.0.6 prints it (abridged: rules left out).
LISTING = {
    "nftables": [
        {"metainfo": {"version": "1.0.6", "json_schema_version": 1}},
        {"table": {"family": "inet", "name": "agentlog_al1s1", "handle": 1}},
        {"counter": {"family": "inet", "name": "bypass_unrecorded", "packets": 4, "bytes": 400}},
        {"counter": {"family": "inet", "name": "something_else", "packets": 9, "bytes": 9}},
        {
            "set": {
                "family": "inet",
                "name": "bypass_ports4",
                "type": ["inet_proto", "ipv4_addr", "inet_service"],
                "elem": [
                    {
                        "elem": {
                            "val": {"concat": ["udp", "10.231.0.1", 9999]},
                            "expires": 59,
                            "counter": {"packets": 3, "bytes": 87},
                        }
                    },
                    {
                        "elem": {
                            "val": {"concat": ["udp", "192.0.2.7", 443]},
                            "counter": {"packets": 1, "bytes": 1228},
                        }
                    },
                ],
            }
        },
        {
            "set": {
                "family": "inet",
                "name": "bypass_other6",
                "elem": [
                    {
                        "elem": {
                            "val": {"concat": ["ipv6-icmp", "fd00::1"]},
                            "counter": {"packets": 2, "bytes": 208},
                        }
                    }
                ],
            }
        },
        {"set": {"family": "inet", "name": "bypass_other4"}},  # empty: no "elem" at all
    ]
}


def test_flows_reads_every_bypass_set_and_the_unrecorded_counter():
    assert flows(LISTING) == {
        ("udp", "10.231.0.1", 9999): Count(3, 87),
        ("udp", "192.0.2.7", 443): Count(1, 1228),
        ("ipv6-icmp", "fd00::1", None): Count(2, 208),
        UNRECORDED_FLOW_KEY: Count(4, 400),
    }


def test_only_new_packets_are_reported():
    before = {("udp", "10.0.0.1", 53): Count(2, 100), ("icmp", "10.0.0.1", None): Count(1, 84)}
    after = {
        ("udp", "10.0.0.1", 53): Count(5, 250),  # three more
        ("icmp", "10.0.0.1", None): Count(1, 84),  # nothing new
        ("udp", "10.0.0.2", 443): Count(1, 1200),  # a new flow
        UNRECORDED_FLOW_KEY: Count(7, 700),
    }
    assert new_bypasses(before, after) == [
        Bypass("udp", "10.0.0.1", 53, 3, 150),
        Bypass("udp", "10.0.0.2", 443, 1, 1200),
        Bypass(None, None, None, 7, 700),
    ]


def test_a_flow_that_timed_out_and_came_back_counts_from_zero():
    key = ("udp", "10.0.0.1", 9)
    assert new_bypasses({key: Count(10, 1000)}, {key: Count(2, 200)}) == [
        Bypass("udp", "10.0.0.1", 9, 2, 200)
    ]


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=30))
def test_reports_add_up_to_the_packets_dropped(increments):
    """However the packets fall between polls, every one is reported exactly once."""
    key = ("udp", "10.0.0.1", 9)
    seen: dict = {}
    total, reported = 0, 0
    for more in increments:
        total += more
        current = {key: Count(total, total * 10)} if total else {}
        reported += sum(b.packets for b in new_bypasses(seen, current))
        seen = current
    assert reported == total


def test_the_poller_says_when_its_table_is_missing():
    if os.geteuid() != 0:
        pytest.skip("nft needs root")
    poller = BypassPoller("agentlog_no_such_table", lambda b: None)
    with pytest.raises(FirewallError, match="agentlog_no_such_table"):
        asyncio.run(poller.poll())


def test_a_sandbox_name_says_who_made_it():
    assert netns.owner("al12345s7") == 12345
    assert netns.owner('iifname "al12345s7h" drop') == 12345
    assert netns.owner("table inet agentlog_al42s1 {") == 42
    assert netns.owner("eth0") is None
    assert netns.owner("canal1s1") is None  # not at the start of a word


near_the_pool = st.integers(min_value=0x0AE70000, max_value=0x0AE701FF)  # 10.231.0-1.x
networks = st.builds(
    lambda address, prefix: IPv4Network(f"{IPv4Address(address)}/{prefix}", strict=False),
    st.one_of(near_the_pool, st.integers(min_value=0, max_value=2**32 - 1)),
    st.integers(min_value=8, max_value=32),
)


@given(st.lists(networks, max_size=20))
def test_a_free_subnet_is_in_the_pool_and_overlaps_nothing_in_use(used):
    pool = IPv4Network("10.231.0.0/24")
    try:
        subnet = netns.free_subnet(pool, used)
    except netns.NetnsError:
        assert all(any(s.overlaps(u) for u in used) for s in pool.subnets(new_prefix=30))
        return
    assert subnet.subnet_of(pool) and subnet.prefixlen == 30
    assert not any(subnet.overlaps(u) for u in used)
