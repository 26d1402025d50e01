"""What the firewall dropped, as bypass event fields: read its sets, report what is new.

The firewall counts each dropped flow (protocol, destination, port) in a
dynamic set with a counter per element. `flows` reads `nft -j list table`,
`new_bypasses` compares two readings and yields one Bypass per flow that
gained packets since the last (pure); BypassPoller runs `nft` every second
and hands each Bypass to a callback, so a dropped flow is reported within a
few seconds. Packets dropped while the sets were full are reported as one
Bypass with no protocol or destination.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from agentlog.sandbox.firewall import BYPASS_SETS, UNRECORDED, FirewallError

# The key under which the packets no flow accounts for are counted.
UNRECORDED_FLOW_KEY = (None, None, None)

type FlowKey = tuple[str | None, str | None, int | None]  # protocol, destination, port


@dataclass(frozen=True)
class Count:
    packets: int
    bytes: int


@dataclass(frozen=True)
class Bypass:
    """One dropped flow's packets since it was last reported: the bypass event's fields."""

    protocol: str | None  # "udp", "icmp", "ipv6-icmp", ...; None: the sets were full
    destination: str | None
    port: int | None  # None for protocols without ports
    packets: int
    bytes: int


def flows(listing: str | Mapping[str, Any]) -> dict[FlowKey, Count]:
    """Each flow's counts in `nft -j list table inet T` output (pure)."""
    doc = json.loads(listing) if isinstance(listing, str) else listing
    found: dict[FlowKey, Count] = {}
    for item in doc.get("nftables", []):
        if (s := item.get("set")) and s.get("name") in BYPASS_SETS:
            for element in s.get("elem", []):
                entry = element.get("elem", element) if isinstance(element, dict) else element
                counter = entry.get("counter") if isinstance(entry, dict) else None
                if counter:
                    found[_key(entry["val"])] = Count(counter["packets"], counter["bytes"])
        elif (c := item.get("counter")) and c.get("name") == UNRECORDED:
            found[UNRECORDED_FLOW_KEY] = Count(c["packets"], c["bytes"])
    return found


def _key(value: Any) -> FlowKey:
    parts = value["concat"]
    port = int(parts[2]) if len(parts) > 2 else None
    return str(parts[0]), str(parts[1]), port


def new_bypasses(before: Mapping[FlowKey, Count], after: Mapping[FlowKey, Count]) -> list[Bypass]:
    """A Bypass for each flow with packets not in `before` (pure).

    A count lower than before means the element timed out and came back: all
    its packets are new.
    """
    found = []
    for key, now in after.items():
        seen = before.get(key, Count(0, 0))
        if now.packets < seen.packets:
            seen = Count(0, 0)
        if now.packets > seen.packets:
            found.append(Bypass(*key, now.packets - seen.packets, now.bytes - seen.bytes))
    return found


class BypassPoller:
    """Read the firewall's table every `every` seconds; report each new Bypass.

    Call `poll` once more before the table is removed, so the last dropped
    packets are reported too.
    """

    def __init__(self, table: str, report: Callable[[Bypass], None], every: float = 1.0) -> None:
        self.table = table
        self.report = report
        self.every = every
        self.seen: dict[FlowKey, Count] = {}

    async def run(self) -> None:
        while True:
            await self.poll()
            await asyncio.sleep(self.every)

    async def poll(self) -> list[Bypass]:
        current = flows(await self._listing())
        found = new_bypasses(self.seen, current)
        self.seen = current
        for bypass in found:
            self.report(bypass)
        return found

    async def _listing(self) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                "nft", "-j", "list", "table", "inet", self.table,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except FileNotFoundError:
            raise FirewallError("nft not found: install nftables") from None
        out, err = await proc.communicate()
        if proc.returncode != 0:
            reason = " ".join(err.decode().split())
            raise FirewallError(f"nft list table inet {self.table}: {reason}")
        return out.decode()
