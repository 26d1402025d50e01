"""A network namespace joined to the proxy side by a veth pair: where the agent runs.

The name and the /30 are unique per link, so sandboxes (and test runs) go
side by side. The name carries the pid of the process that made it
(`al<pid>s<n>`; the host end of the veth is the name plus "h", the nftables
table `agentlog_<name>`), which is how a leftover of a killed run is told
from a live one's. IPv6 is off inside the namespace, so the agent's kernel
sends nothing on its own; the host end keeps it, so an IPv6 packet the agent
does send reaches the firewall and is counted rather than vanishing unseen.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

from agentlog.errors import UserError

AGENT_IF = "agent0"
DEFAULT_POOL = IPv4Network("10.231.0.0/16")
# Any text naming a link, a namespace or a table of ours: the pid is group 1.
NAME = re.compile(r"(?<![A-Za-z0-9])al(\d+)s\d+")
_LOCK = Path("/run/lock" if Path("/run/lock").is_dir() else "/tmp") / "agentlog-netns.lock"
_SEQ = itertools.count(1)


class NetnsError(UserError):
    """The namespace or its link could not be made; the message is one line."""


@dataclass(frozen=True)
class AgentLink:
    """A namespace and the veth pair joining it to the proxy side."""

    name: str
    subnet: IPv4Network

    @property
    def host_if(self) -> str:
        return f"{self.name}h"

    @property
    def agent_if(self) -> str:
        return AGENT_IF

    @property
    def host_ip(self) -> IPv4Address:
        return self.subnet.network_address + 1

    @property
    def agent_ip(self) -> IPv4Address:
        return self.subnet.network_address + 2

    @property
    def nft_table(self) -> str:
        return f"agentlog_{self.name}"


def owner(text: str) -> int | None:
    """The pid that made the sandbox named in text, or None if it names none."""
    m = NAME.search(text)
    return int(m.group(1)) if m else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["failed"])[0]
        raise NetnsError(f"ip {' '.join(args)}: {reason}")
    return done.stdout


def _names_in_use() -> set[str]:
    namespaces = {line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()}
    links = {line.split(":")[1].strip().split("@")[0] for line in _ip("-o", "link").splitlines()}
    return namespaces | links


def _networks_in_use() -> list[IPv4Network]:
    used = []
    for line in _ip("-o", "-4", "addr").splitlines():
        used.append(IPv4Interface(line.split()[3]).network)
    for line in _ip("-4", "route", "show", "table", "all").splitlines():
        dest = line.split()[0]
        if dest[0].isdigit():
            used.append(IPv4Network(dest if "/" in dest else f"{dest}/32"))
    return used


def free_subnet(pool: IPv4Network, used: list[IPv4Network]) -> IPv4Network:
    """The first /30 of pool that overlaps nothing in use (pure)."""
    for subnet in pool.subnets(new_prefix=30):
        if not any(subnet.overlaps(net) for net in used):
            return subnet
    raise NetnsError(f"no free /30 left in {pool} for a sandbox")


@contextlib.contextmanager
def _allocation_lock() -> Iterator[None]:
    """Two processes never pick the same name or subnet: picking and making are one step."""
    with open(_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create(pool: IPv4Network = DEFAULT_POOL) -> AgentLink:
    """Make the namespace and its link, addressed and up; all or nothing."""
    with _allocation_lock():
        in_use = _names_in_use()
        name = next(n for n in (f"al{os.getpid()}s{i}" for i in _SEQ) if n not in in_use)
        link = AgentLink(name, free_subnet(pool, _networks_in_use()))
        try:
            _make(link)
        except BaseException:
            remove(link.name)
            raise
    return link


def _make(link: AgentLink) -> None:
    host, agent = str(link.host_ip), str(link.agent_ip)
    _ip("netns", "add", link.name)
    _ip("link", "add", link.host_if, "type", "veth", "peer", "name", AGENT_IF, "netns", link.name)
    # Before any link is up, so the agent's kernel never sends router or neighbour solicitations.
    ipv6_off = ["net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"]
    # An unprivileged agent may send pings (ICMP datagram sockets), so that they are dropped
    # and recorded as bypass attempts rather than refused unseen by its own kernel.
    ping = "net.ipv4.ping_group_range=0 2147483647"
    _ip("netns", "exec", link.name, "sysctl", "-q", "-e", "-w", *ipv6_off, ping)
    _ip("addr", "add", f"{host}/30", "dev", link.host_if)
    _ip("link", "set", link.host_if, "up")
    _ip("-n", link.name, "link", "set", "lo", "up")
    _ip("-n", link.name, "addr", "add", f"{agent}/30", "dev", AGENT_IF)
    _ip("-n", link.name, "link", "set", AGENT_IF, "up")
    _ip("-n", link.name, "route", "add", "default", "via", host)


def remove(name: str) -> None:
    """Delete the namespace and both ends of its link; nothing there is not an error."""
    _ip("netns", "del", name, check=False)
    # The namespace outlives its name while a process is still inside; its veth with it.
    _ip("link", "del", f"{name}h", check=False)
    if name in _names_in_use() or f"{name}h" in _names_in_use():
        raise NetnsError(f"sandbox {name} could not be removed")
