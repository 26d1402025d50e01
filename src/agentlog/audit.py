"""Every flow the agent started, matched to the journal event that accounts for it (pure).

The captures see the agent's packets as it sent them, before the firewall.
What the firewall lets through, agentlog recorded by the agent's address:
- a TCP connection (redirected or to the proxy) by a `request`, `tcp`,
  `tls_failed` or (DNS over TCP) `dns` event naming its source as `client`;
- a UDP flow to port 53 (any address, as redirected) or to the DNS listener
  by a `dns` event naming its source.
What the firewall dropped, by a `bypass` event for its protocol, destination
and port. Whatever nothing accounts for is what `agentlog audit` reports.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from agentlog.capture.flows import Flow

CLIENT_EVENTS = ("request", "tcp", "tls_failed", "dns")
_LISTENER = re.compile(r"\[?([0-9A-Fa-f:.]+?)\]?:(\d+) \((\w+)\)")


@dataclass(frozen=True)
class Audit:
    flows: list[Flow]
    unaccounted: list[Flow]

    @property
    def ok(self) -> bool:
        return not self.unaccounted


def listeners(events: Iterable[Mapping]) -> set[tuple[str, int, str]]:
    """(address, port, mode) of every listener, from the journal's `start` events."""
    found: set[tuple[str, int, str]] = set()
    for event in events:
        if event.get("event") == "journal" and event.get("action") == "start":
            for host, port, mode in _LISTENER.findall(str(event.get("listening") or "")):
                found.add((host, int(port), mode))
    return found


def proxy_addresses(events: Iterable[Mapping]) -> set[str]:
    """The addresses the proxy listened on: the proxy side's."""
    return {host for host, _, _ in listeners(events)}


def _plain(address: str) -> str:
    return address.replace("[::ffff:", "").replace("]:", ":") if "::ffff:" in address else address


def audit(flows: list[Flow], events: Sequence[Mapping]) -> Audit:
    dns = {(host, port) for host, port, mode in listeners(events) if mode == "dns"}
    clients = {
        _plain(str(e["client"]))
        for e in events
        if e.get("event") in CLIENT_EVENTS and e.get("client")
    }
    dropped = {
        (e.get("protocol"), e.get("destination"), e.get("port"))
        for e in events
        if e.get("event") == "bypass"
    }
    unaccounted = []
    for flow in flows:
        to_dns = flow.protocol == "udp" and (
            flow.port == 53 or (flow.destination, flow.port) in dns
        )
        if flow.protocol == "tcp" or to_dns:
            accounted = flow.source in clients
        else:
            accounted = (flow.protocol, flow.destination, flow.port) in dropped
        if not accounted:
            unaccounted.append(flow)
    return Audit(flows, unaccounted)
