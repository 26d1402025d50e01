"""The proxy container's entrypoint, its pure parts (tests/test_docker.py runs it for real)."""

from __future__ import annotations

import json
import subprocess
from ipaddress import IPv4Address, IPv4Network

import pytest

from agentlog.capture.flows import Packet
from agentlog.errors import ConfigError
from agentlog.policy import Policy, Rule
from agentlog.sandbox import container
from agentlog.sandbox.container import Interface
from tests.docker_engine import ROOT

IP_ADDR = json.dumps(
    [
        {"ifname": "lo", "addr_info": [{"family": "inet", "local": "127.0.0.1", "prefixlen": 8}]},
        {
            "ifname": "eth0",
            "addr_info": [{"family": "inet", "local": "172.29.80.2", "prefixlen": 24}],
        },
        {
            "ifname": "eth1",
            "addr_info": [
                {"family": "inet", "local": "172.18.0.3", "prefixlen": 16},
                {"family": "inet6", "local": "fe80::1", "prefixlen": 64},
            ],
        },
    ]
)
AGENT_NET = IPv4Network("172.29.80.0/24")
LINK = Interface("eth0", IPv4Address("172.29.80.2"), AGENT_NET)
OUTSIDE = Interface("eth1", IPv4Address("172.18.0.3"), IPv4Network("172.18.0.0/16"))


def test_the_agent_side_is_found_by_its_subnet():
    assert container.split(container.interfaces(IP_ADDR), AGENT_NET) == (LINK, OUTSIDE)


def test_a_subnet_no_interface_is_on_is_refused():
    with pytest.raises(ConfigError, match="no interface"):
        container.split(container.interfaces(IP_ADDR), IPv4Network("10.9.0.0/24"))


def _denied(patterns: list[str], address: str) -> bool:
    policy = Policy(tuple(Rule.parse("deny", p) for p in patterns))
    return not policy.decide_address(address, 443).allowed


def test_the_guard_keeps_the_host_and_the_proxy_closed_when_a_route_opens_their_network():
    blocks = container.guard_blocks(
        [LINK.address, OUTSIDE.address, container.PROXY_TUNNEL_IP],
        [IPv4Address("172.18.0.1")],
        [container.TUNNEL, LINK.network, OUTSIDE.network],
    )
    internet = "172.18.0.2"  # the routed service, on the outside network
    deny = container.deny_patterns(blocks, [internet])
    assert not _denied(deny, internet)
    for closed in ("172.18.0.1", "172.18.0.3", "172.29.80.1", "10.89.0.1", "127.0.0.1",
                   "169.254.169.254", "192.168.1.1", "10.0.0.1"):  # fmt: skip
        assert _denied(deny, closed), closed
    assert "[fc00::/7]" in deny and "[::1/128]" in deny


def test_route_targets_resolve_names():
    resolved = container.route_targets(
        "api.anthropic.com=internet:443, site.test=10.1.2.3:8443",
        resolve=lambda name: (name, [], ["172.18.0.2"]),
    )
    assert resolved == ["172.18.0.2", "10.1.2.3"]


def test_agentlog_up_listens_on_the_tunnel_and_serves_the_ui_outside():
    tunnel = Interface(container.TUNNEL_IF, container.PROXY_TUNNEL_IP, container.TUNNEL)
    env = container.up_environment(
        {"AGENTLOG_DENY": "evil.test", "AGENTLOG_ALLOW": "api.anthropic.com"},
        tunnel,
        OUTSIDE,
        ["10.0.0.0/8"],
    )
    assert env["AGENTLOG_LISTEN"] == "10.89.0.1:8080"
    assert env["AGENTLOG_TRANSPARENT"] == "10.89.0.1:8081"
    assert env["AGENTLOG_DNS"] == "10.89.0.1:8053"
    assert env["AGENTLOG_CAPTURE"] == "agentlog0"
    assert env["AGENTLOG_UI"] == "172.18.0.3:8888"
    assert env["AGENTLOG_DENY"] == "evil.test,10.0.0.0/8"
    assert env["AGENTLOG_ALLOW"] == "api.anthropic.com"


def test_the_links_rules_parse_and_let_only_the_agents_tunnel_through():
    text = container.link_rules(LINK, IPv4Address("172.29.80.3"))
    lines = [line.strip() for line in text.splitlines()]
    accepted = [line for line in lines if line.endswith("accept") and "iifname" in line]
    assert accepted == [
        'iifname "eth0" ip saddr 172.29.80.3 ip daddr 172.29.80.2 udp dport 4789 accept'
    ]
    assert 'iifname "eth0" drop' in lines


@pytest.mark.skipif(subprocess.run(["which", "nft"]).returncode != 0, reason="no nft")
def test_the_links_rules_load_with_the_firewall(tmp_path):
    """nft checks the whole text (-c: nothing is loaded)."""
    from agentlog.sandbox import firewall

    tunnel = Interface(container.TUNNEL_IF, container.PROXY_TUNNEL_IP, container.TUNNEL)
    fw = container.agent_firewall(tunnel, container.AGENT_TUNNEL_IP)
    text = firewall.ruleset(fw) + container.link_rules(LINK, IPv4Address("172.29.80.3"))
    done = subprocess.run(["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_tunnel_matches_the_agent_entrypoint():
    text = (ROOT / "docker" / "entrypoint-agent.sh").read_text()
    assert f"TUNNEL_IF={container.TUNNEL_IF} TUNNEL_VNI={container.TUNNEL_VNI}" in text
    assert f"TUNNEL_PORT={container.TUNNEL_PORT} TUNNEL_MTU={container.TUNNEL_MTU}" in text
    assert f"PROXY_IP={container.PROXY_TUNNEL_IP} " in text
    assert f"AGENT_TUNNEL_IP={container.AGENT_TUNNEL_IP}/{container.TUNNEL.prefixlen}" in text
    assert f"PROXY_PORT={container.EXPLICIT_PORT}" in text


@pytest.mark.parametrize(
    ("protocol", "icmp_type", "source", "destination", "housekeeping"),
    [
        (58, 143, "fe80::42:5bff:fe44:1890", "ff02::16", True),  # MLDv2 report
        (58, 133, "fe80::1", "ff02::2", True),  # router solicitation
        (0, None, "fe80::1", "ff02::16", True),  # MLD behind hop-by-hop
        (58, 128, "fe80::1", "ff02::1", False),  # echo: an unprivileged ping can send it
        (58, 133, "2001:db8::1", "ff02::2", False),  # not link-local
        (58, 135, "fe80::1", "fe80::2", False),  # unicast
        (17, None, "fe80::1", "ff02::fb", False),  # mDNS: any program can
    ],
)
def test_the_links_ipv6_housekeeping_is_told_apart(
    protocol, icmp_type, source, destination, housekeeping
):
    packet = Packet(protocol, source, destination, None, None, False, None, icmp_type)
    assert packet.link_housekeeping is housekeeping
