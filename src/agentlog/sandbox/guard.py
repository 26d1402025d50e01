"""What a sandboxed agent may not reach through the proxy, whatever the policy allows.

The firewall keeps the agent's packets off the host; but the proxy runs on
the host, and would otherwise dial on the agent's behalf whatever the policy
allows: the host's loopback services (`CONNECT 127.0.0.1:22`), its other
addresses, link-local addresses (cloud metadata at 169.254.169.254), and the
other sandboxes. `guard_rules` denies those address blocks on top of the
user's rules (deny rules on addresses also judge what names resolve to).

A block that a `--route` points into is left out: the operator sent traffic
there on purpose (the tests route their fakes' names to 127.0.0.1).
"""

from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Iterable

from agentlog.hosts import HostError, canonical_host
from agentlog.policy import Policy, Rule

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Routes = dict[str, tuple[str, int]]

ALWAYS = ("127.0.0.0/8", "::1/128", "169.254.0.0/16", "fe80::/10")


def guard_blocks(local: Iterable[str], sandboxes: Network) -> list[Network]:
    """Loopback, link-local, the sandboxes' network and each of the host's addresses (pure)."""
    blocks = [ipaddress.ip_network(b) for b in ALWAYS] + [sandboxes]
    for address in local:
        network = ipaddress.ip_network(address)  # a single address: /32 or /128
        if not any(network.network_address in b for b in blocks):
            blocks.append(network)
    return blocks


def _route_targets(
    routes: dict[str, tuple[str, int]],
) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    targets = []
    for host, _ in routes.values():
        try:
            targets.append(ipaddress.ip_address(canonical_host(host)))
        except (HostError, ValueError):
            continue  # a route to a name: its addresses are judged when it is dialled
    return targets


def guarded(
    policy: Policy, blocks: list[Network], routes: dict[str, tuple[str, int]]
) -> tuple[Policy, list[Network]]:
    """The policy with a deny rule per block, but the blocks a route points into (pure).
    Also returns the blocks left open that way."""
    targets = _route_targets(routes)
    kept, open_ = [], []
    for block in blocks:
        if any(t.version == block.version and t in block for t in targets):
            open_.append(block)
        else:
            kept.append(block)
    rules = tuple(Rule.parse("deny", str(b) if b.version == 4 else f"[{b}]") for b in kept)
    return Policy(rules + policy.rules), open_


def host_addresses() -> list[str]:
    """Every address on this host's interfaces (the proxy side's network namespace)."""
    done = subprocess.run(["ip", "-j", "addr"], capture_output=True, text=True, check=True)
    return [
        info["local"]
        for link in json.loads(done.stdout or "[]")
        for info in link.get("addr_info", [])
        if "local" in info
    ]
