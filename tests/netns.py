"""A network namespace joined to the host by a veth pair: the agent's side, for tests.

Only addresses inside 10.231.0.0/16 on links this module creates are used;
traffic never leaves the machine. Everything is undone on exit, iptables
rules included.
"""

from __future__ import annotations

import os
import random
import subprocess
from dataclasses import dataclass, field


def _free_subnet() -> int:
    """A 10.231.N.0/30 that no interface here uses yet (tests may run side by side)."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    free = [n for n in range(1, 250) if f" 10.231.{n}." not in used]
    return random.choice(free)


def sh(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


@dataclass
class AgentNamespace:
    name: str = field(default_factory=lambda: f"al{os.getpid() % 10000}x{random.randrange(10**4)}")
    subnet: int = field(default_factory=lambda: _free_subnet())
    rules: list[list[str]] = field(default_factory=list)

    @property
    def host_if(self) -> str:
        return f"{self.name}h"[:15]

    @property
    def host_ip(self) -> str:
        return f"10.231.{self.subnet}.1"

    @property
    def agent_ip(self) -> str:
        return f"10.231.{self.subnet}.2"

    def __enter__(self) -> AgentNamespace:
        sh("ip", "netns", "add", self.name)
        try:
            sh(
                "ip",
                "link",
                "add",
                self.host_if,
                "type",
                "veth",
                "peer",
                "name",
                "agent0",
                "netns",
                self.name,
            )
            sh("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if)
            sh("ip", "link", "set", self.host_if, "up")
            self.run("ip", "link", "set", "lo", "up")
            self.run("ip", "addr", "add", f"{self.agent_ip}/30", "dev", "agent0")
            self.run("ip", "link", "set", "agent0", "up")
            self.run("ip", "route", "add", "default", "via", self.host_ip)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for rule in reversed(self.rules):
            subprocess.run(["iptables", "-D", *rule], check=False, capture_output=True)
        self.rules.clear()
        subprocess.run(["ip", "netns", "del", self.name], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", self.host_if], check=False, capture_output=True)

    def iptables(self, *rule: str) -> None:
        """Append a rule (e.g. "-t", "nat", "PREROUTING", ...); removed on exit."""
        table = list(rule[:2]) if rule[0] == "-t" else []
        rest = list(rule[2:]) if table else list(rule)
        sh("iptables", *table, "-A", *rest)
        self.rules.append([*table, *rest])

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
    return (
        os.geteuid() == 0
        and subprocess.run(["which", "ip", "iptables"], capture_output=True).returncode == 0
    )
