"""A network namespace joined to the host by a veth pair: the agent's side, for tests.

The namespace and link are the sandbox's own (agentlog.sandbox.netns), with a
unique name and a /30 of 10.231.0.0/16; traffic never leaves the machine.
Everything is undone on exit, the firewall table included.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import IPv4Address

from agentlog.sandbox import firewall, netns
from agentlog.sandbox.firewall import Firewall


class AgentNamespace:
    def __init__(self) -> None:
        self.link: netns.AgentLink | None = None
        self.tables: list[str] = []

    @property
    def _link(self) -> netns.AgentLink:
        assert self.link is not None, "use AgentNamespace as a context manager"
        return self.link

    @property
    def name(self) -> str:
        return self._link.name

    @property
    def host_if(self) -> str:
        return self._link.host_if

    @property
    def host_ip(self) -> str:
        return str(self._link.host_ip)

    @property
    def agent_ip(self) -> str:
        return str(self._link.agent_ip)

    def __enter__(self) -> AgentNamespace:
        self.link = netns.create()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            for table in self.tables:
                firewall.remove(table)
            self.tables.clear()
        finally:
            if self.link is not None:
                netns.remove(self.link.name)

    def firewall(self, *, explicit: int, transparent: int, dns: int) -> Firewall:
        """Apply the sandbox's firewall on the host end of this link; removed on exit."""
        fw = Firewall(
            table=self._link.nft_table,
            agent_if=self.host_if,
            agent_ip=IPv4Address(self.agent_ip),
            proxy_ip=IPv4Address(self.host_ip),
            explicit_port=explicit,
            transparent_port=transparent,
            dns_port=dns,
        )
        self.tables.append(fw.table)
        firewall.apply(fw)
        return fw

    def run(
        self, *cmd: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *cmd],
            check=check,
            capture_output=True,
            timeout=timeout,
        )

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.name, *cmd], **kwargs)


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in ("ip", "nft", "sysctl"))
