"""The sandbox's firewall, proved rule by rule on real namespaces.

The agent is a namespace behind the ruleset; on the host side are stand-ins
for agentlog (explicit, transparent and DNS listeners), for the UI, for a
service on 0.0.0.0 and a UDP service, and a second namespace stands in for
another sandbox. Forwarding is switched on for both test links (and only
them), so "unreachable" is the firewall's doing, not the host's defaults:
`test_without_the_firewall_every_probe_gets_through` shows each probe would
succeed without it.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from agentlog.errors import ConfigError
from agentlog.sandbox import firewall
from agentlog.sandbox.bypass import Bypass, BypassPoller
from tests import probes
from tests.netns import AgentNamespace, can_make_namespaces
from tests.probes import QUIC_INITIAL, Listener

A = IPv4Address


def spec(**changes: object) -> firewall.Firewall:
    values: dict = dict(
        table="agentlog_t",
        agent_if="al1s1h",
        agent_ip=A("10.231.0.2"),
        proxy_ip=A("10.231.0.1"),
        explicit_port=8080,
        transparent_port=8081,
        dns_port=8053,
    )
    return firewall.Firewall(**{**values, **changes})


@pytest.mark.parametrize(
    "changes",
    [
        {"agent_if": 'x" accept; #'},
        {"agent_if": "much-too-long-name0"},
        {"table": "agentlog t"},
        {"table": ""},
        {"dns_port": 8080},
        {"transparent_port": 0},
        {"explicit_port": 65536},
    ],
)
def test_values_that_would_change_the_ruleset_are_refused(changes):
    with pytest.raises(ConfigError):
        spec(**changes)


def test_the_ruleset_is_one_table_that_accepts_only_the_agent_to_agentlogs_ports():
    text = firewall.ruleset(spec())
    assert text.startswith("table inet agentlog_t\ndelete table inet agentlog_t\n")
    assert text.count("table inet agentlog_t {") == 1
    lines = [line.strip() for line in text.splitlines()]
    agent = 'iifname "al1s1h" ip saddr 10.231.0.2 ip daddr 10.231.0.1'
    assert [line for line in lines if line.endswith(" accept") and "policy" not in line] == [
        f"{agent} tcp dport {{ 8080, 8081, 8053 }} accept",
        f"{agent} udp dport 8053 accept",
    ]


needs_root = pytest.mark.skipif(not can_make_namespaces(), reason="needs root, ip, nft, sysctl")


class Poller:
    """The real BypassPoller in a thread of its own, noting when each report came."""

    def __init__(self, table: str) -> None:
        self.reports: list[tuple[float, Bypass]] = []
        self._poller = BypassPoller(table, lambda b: self.reports.append((time.monotonic(), b)))
        self._stop = threading.Event()
        self._failure: BaseException | None = None
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()

    async def _main(self) -> None:
        task = asyncio.create_task(self._poller.run())
        while not self._stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        task.cancel()
        if task.done() and not task.cancelled() and task.exception():
            self._failure = task.exception()

    def packets(self, protocol: str, destination: str, port: int | None) -> int:
        key = (protocol, destination, port)
        return sum(b.packets for _, b in self.reports if (b.protocol, b.destination, b.port) == key)

    def reported_by(self, deadline: float, protocol: str, destination: str, port: int | None):
        """The first report of this flow, waiting until deadline (monotonic) at most."""
        while time.monotonic() < deadline + 0.5:
            for when, b in self.reports:
                if (b.protocol, b.destination, b.port) == (protocol, destination, port):
                    return when
            assert self._failure is None, self._failure
            time.sleep(0.05)
        return None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        assert self._failure is None, self._failure


@dataclass
class Sandbox:
    agent: AgentNamespace
    other: AgentNamespace
    explicit: Listener
    transparent: Listener
    dns_tcp: Listener
    dns_udp: Listener
    ui: Listener
    service_tcp: Listener
    service_udp: Listener
    udp_service: Listener
    quic: Listener
    other_tcp: Listener
    other_udp: Listener
    agent_udp: Listener  # inside the agent's namespace: is it reachable from the other one?
    poller: Poller

    @property
    def host(self) -> str:
        return self.agent.host_ip


def forward_on(ns: AgentNamespace) -> None:
    """Route for this link only (it goes away with the link); the host's setting is untouched."""
    subprocess.run(["sysctl", "-q", "-w", f"net.ipv4.conf.{ns.host_if}.forwarding=1"], check=True)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with ExitStack() as stack:
        agent = stack.enter_context(AgentNamespace())
        other = stack.enter_context(AgentNamespace())
        forward_on(agent)
        forward_on(other)
        host = agent.host_ip

        def listen(*args, **kwargs) -> Listener:
            listener = Listener(*args, **kwargs)
            stack.callback(listener.close)
            return listener

        dns_tcp = listen(host, greeting=b"dns")
        service_tcp = listen("0.0.0.0", greeting=b"service")
        other_tcp = listen("0.0.0.0", greeting=b"other", namespace=other.name)
        explicit = listen(host, greeting=b"explicit")
        transparent = listen(host, greeting=b"transparent")
        fw = agent.firewall(explicit=explicit.port, transparent=transparent.port, dns=dns_tcp.port)
        poller = Poller(fw.table)
        stack.callback(poller.stop)
        box = Sandbox(
            agent=agent,
            other=other,
            explicit=explicit,
            transparent=transparent,
            dns_tcp=dns_tcp,
            dns_udp=listen(host, dns_tcp.port, udp=True, greeting=b"answer"),
            ui=listen(host, greeting=b"ui"),
            service_tcp=service_tcp,
            service_udp=listen("0.0.0.0", service_tcp.port, udp=True, greeting=b"service"),
            udp_service=listen(host, udp=True, greeting=b"udp"),
            quic=listen(host, 443, udp=True, greeting=b"quic"),
            other_tcp=other_tcp,
            other_udp=listen(
                "0.0.0.0", other_tcp.port, udp=True, greeting=b"other", namespace=other.name
            ),
            agent_udp=listen("0.0.0.0", udp=True, greeting=b"agent", namespace=agent.name),
            poller=poller,
        )
        yield box


def untouched(*listeners: Listener) -> None:
    for listener in listeners:
        assert listener.hits == [], f"{listener.greeting!r} was reached: {listener.hits}"


@needs_root
def test_the_agent_reaches_the_explicit_port(sandbox):
    s = sandbox
    assert probes.tcp(s.agent.name, s.host, s.explicit.port) == b"explicit"
    assert [peer[0] for peer, _ in s.explicit.hits] == [s.agent.agent_ip]
    untouched(s.transparent)


@needs_root
def test_any_other_tcp_ends_at_the_transparent_listener_with_its_original_destination(sandbox):
    s = sandbox
    targets = [
        (s.host, 4444),  # nothing listens there
        (s.host, s.ui.port),
        (s.host, s.service_tcp.port),
        (s.other.host_ip, s.service_tcp.port),  # the host, by another of its addresses
        (s.other.agent_ip, s.other_tcp.port),  # another sandbox
        (s.host, 443),
    ]
    for host, port in targets:
        assert probes.tcp(s.agent.name, host, port) == b"transparent", (host, port)
    assert [dst for _, dst in s.transparent.hits] == targets
    assert {peer[0] for peer, _ in s.transparent.hits} == {s.agent.agent_ip}
    untouched(s.ui, s.service_tcp, s.other_tcp, s.explicit)


@needs_root
def test_the_ui_local_services_and_other_namespaces_are_out_of_reach(sandbox):
    s = sandbox
    agent = s.agent.name
    assert probes.tcp(agent, s.host, s.ui.port) == b"transparent"
    assert probes.udp(agent, s.host, s.service_udp.port) is None
    assert probes.udp(agent, s.other.agent_ip, s.other_udp.port) is None
    assert not probes.ping(agent, s.other.agent_ip)
    # Nor can the other namespace reach into this one: nothing is forwarded to it.
    assert probes.udp(s.other.name, s.agent.agent_ip, s.agent_udp.port) is None
    assert not probes.ping(s.other.name, s.agent.agent_ip)
    untouched(s.ui, s.service_udp, s.other_udp, s.other_tcp, s.agent_udp)
    deadline = time.monotonic() + 5
    assert s.poller.reported_by(deadline, "udp", s.other.agent_ip, s.other_udp.port)
    assert s.poller.reported_by(deadline, "icmp", s.other.agent_ip, None)


@needs_root
def test_dns_to_any_address_ends_at_the_dns_port(sandbox):
    s = sandbox
    agent = s.agent.name
    targets = [s.host, s.other.agent_ip, s.other.host_ip]
    for target in targets:
        # The answer comes from the address asked: the agent cannot tell it was redirected.
        assert probes.udp(agent, target, 53, b"query") == (b"answer", (target, 53))
        assert probes.tcp(agent, target, 53) == b"dns"
    assert probes.udp(agent, s.host, s.dns_udp.port, b"direct")[0] == b"answer"
    assert [data for _, data in s.dns_udp.hits] == [b"query"] * 3 + [b"direct"]
    assert [dst for _, dst in s.dns_tcp.hits] == [(t, 53) for t in targets]
    untouched(s.transparent)
    time.sleep(1.5)
    assert s.poller.reports == []


@needs_root
def test_udp_quic_and_ping_are_dropped_and_reported_within_5s(sandbox):
    s = sandbox
    agent = s.agent.name
    sent = time.monotonic()
    assert probes.udp(agent, s.host, s.udp_service.port, count=3) is None
    assert probes.udp(agent, s.host, 443, QUIC_INITIAL) is None
    assert not probes.ping(agent, s.host)
    untouched(s.udp_service, s.quic)
    flows = [("udp", s.host, s.udp_service.port, 3), ("udp", s.host, 443, 1)]
    flows.append(("icmp", s.host, None, 1))
    for protocol, destination, port, packets in flows:
        when = s.poller.reported_by(sent + 5, protocol, destination, port)
        assert when is not None and when - sent <= 5, (protocol, destination, port)
        assert s.poller.packets(protocol, destination, port) == packets


@needs_root
def test_ipv6_is_dropped_and_reported(sandbox):
    """A hostile root agent switches IPv6 back on and sends; it is counted and goes nowhere."""
    s = sandbox
    n = int(IPv4Address(s.host)) & 0xFFFF
    host6, agent6 = f"fd00:a1:{n:x}::1", f"fd00:a1:{n:x}::2"
    mac = Path(f"/sys/class/net/{s.agent.host_if}/address").read_text().strip()
    subprocess.run(
        ["ip", "-6", "addr", "add", f"{host6}/64", "dev", s.agent.host_if, "nodad"], check=True
    )
    s.agent.run("sysctl", "-q", "-w", "net.ipv6.conf.agent0.disable_ipv6=0")
    s.agent.run("ip", "-6", "addr", "add", f"{agent6}/64", "dev", "agent0", "nodad")
    s.agent.run("ip", "-6", "neigh", "add", host6, "lladdr", mac, "dev", "agent0")
    listener = Listener(host6, udp=True, greeting=b"v6")
    try:
        sent = time.monotonic()
        assert probes.udp(s.agent.name, host6, listener.port, count=2) is None
        assert not probes.ping(s.agent.name, host6)
        untouched(listener)
    finally:
        listener.close()
    assert s.poller.reported_by(sent + 5, "udp", host6, listener.port)
    assert s.poller.reported_by(sent + 5, "ipv6-icmp", host6, None)
    assert s.poller.packets("udp", host6, listener.port) == 2


@needs_root
def test_without_the_firewall_every_probe_gets_through(sandbox):
    """The control: the same probes, the table removed, all succeed."""
    s = sandbox
    s.poller.stop()  # it reads the table: stopped first, or it fails finding none
    firewall.remove(s.agent.link.nft_table)
    firewall.remove(s.agent.link.nft_table)  # removing what is not there is not an error
    agent = s.agent.name
    assert probes.tcp(agent, s.host, s.ui.port) == b"ui"
    assert probes.tcp(agent, s.other.agent_ip, s.other_tcp.port) == b"other"
    assert probes.udp(agent, s.host, s.udp_service.port)[0] == b"udp"
    assert probes.udp(agent, s.host, 443, QUIC_INITIAL)[0] == b"quic"
    assert probes.udp(agent, s.other.agent_ip, s.other_udp.port)[0] == b"other"
    assert probes.udp(s.other.name, s.agent.agent_ip, s.agent_udp.port)[0] == b"agent"
    assert probes.ping(agent, s.host)
    assert probes.ping(agent, s.other.agent_ip)


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@needs_root
def test_apply_replaces_whole_and_a_failed_load_leaves_the_table_as_it_was():
    with AgentNamespace() as ns:
        fw = ns.firewall(explicit=1080, transparent=1081, dns=1053)
        listing = subprocess.run(
            ["nft", "list", "table", "inet", fw.table], capture_output=True, text=True
        ).stdout
        firewall.apply(fw)  # again: a replace, not a second copy of every rule
        again = subprocess.run(
            ["nft", "list", "table", "inet", fw.table], capture_output=True, text=True
        ).stdout
        assert again == listing and again.count("chain agent_nat") == 1
        broken = firewall.ruleset(fw) + "add rule inet nosuchtable nochain drop\n"
        loaded = subprocess.run(["nft", "-f", "-"], input=broken, capture_output=True, text=True)
        assert loaded.returncode != 0
        after = subprocess.run(
            ["nft", "list", "table", "inet", fw.table], capture_output=True, text=True
        ).stdout
        assert after == listing
    assert f"inet {fw.table}\n" not in nft_tables()
