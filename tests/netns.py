"""A network namespace joined to the host by a veth pair: the agent's side, for tests.

The namespace and link are the sandbox's own (agentlog.sandbox.netns), with a
unique name and a /30 of 10.231.0.0/16; traffic never leaves the machine.
Everything is undone on exit, firewall tables and iptables rules included.
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
        self.rules: list[list[str]] = []
        self.iptables_tables_made: set[str] = set()

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
            self._remove_iptables_rules()
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

    def iptables(self, *rule: str) -> None:
        """Append one host rule (e.g. "-t", "nat", "PREROUTING", ...); removed on exit.

        iptables-nft makes a table the first time a rule goes in it and never
        removes it: a table this made goes again when its rules have.
        """
        table = list(rule[:2]) if rule[0] == "-t" else []
        rest = list(rule[2:]) if table else list(rule)
        name = table[1] if table else "filter"
        if _iptables_nft() and not _nft_table_exists(name):
            self.iptables_tables_made.add(name)
        subprocess.run(["iptables", *table, "-A", *rest], check=True, capture_output=True)
        self.rules.append([*table, "-D", *rest])

    def _remove_iptables_rules(self) -> None:
        for rule in reversed(self.rules):
            subprocess.run(["iptables", *rule], check=True, capture_output=True)
        self.rules.clear()
        for name in self.iptables_tables_made:
            listed = subprocess.run(["iptables", "-t", name, "-S"], capture_output=True, text=True)
            if "\n-A " not in "\n" + listed.stdout:  # another run may have rules there now
                subprocess.run(["nft", "delete", "table", "ip", name], capture_output=True)
        self.iptables_tables_made.clear()

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


def _iptables_nft() -> bool:
    version = subprocess.run(["iptables", "--version"], capture_output=True, text=True)
    return "nf_tables" in version.stdout


def _nft_table_exists(name: str) -> bool:
    return subprocess.run(["nft", "list", "table", "ip", name], capture_output=True).returncode == 0


def can_make_namespaces() -> bool:
    return os.geteuid() == 0 and all(
        shutil.which(tool) for tool in ("ip", "nft", "sysctl", "iptables")
    )
