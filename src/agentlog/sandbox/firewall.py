"""The sandbox's firewall: one nftables table, applied on the proxy side of the agent's link.

What the agent may do (issue 9): reach agentlog's explicit proxy port and its
DNS port on the proxy side, nothing else there; every other TCP connection,
whatever its address and port, is redirected to the transparent listener
(which reads the original destination with SO_ORIGINAL_DST, as conntrack
keeps it for `redirect`); DNS over UDP and TCP to any address goes to the
DNS port; everything else (other UDP, QUIC, ICMP, IPv6) is dropped and
counted per flow in the BYPASS_SETS, which bypass.py reads. Nothing is
forwarded to or from the agent's link.

`redirect` sends to the address of the link's proxy end (proxy_ip), so the
transparent and DNS listeners listen there (or on 0.0.0.0).

`ruleset` is pure; `apply` and `remove` hand text to one `nft -f`, which is a
single transaction: the table is there whole or not at all.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from ipaddress import IPv4Address

from agentlog.errors import ConfigError, UserError

# Dropped flows with a port (tcp, udp, ...) and without (icmp, ...), per IP version.
BYPASS_SETS = ("bypass_ports4", "bypass_other4", "bypass_ports6", "bypass_other6")
# Packets dropped while the sets were full: no flow accounts for them.
UNRECORDED = "bypass_unrecorded"
# An element lives this long after its last packet. The poller reads every
# second or so; a flow that stops and starts again within this time keeps
# counting on, and a gap longer than this starts from zero (bypass.py copes).
FLOW_TIMEOUT = "10m"
FLOW_LIMIT = 65536

_PORTED = "{ tcp, udp, udplite, sctp, dccp }"
_TABLE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")
_IFACE = re.compile(r"[A-Za-z0-9_.-]{1,15}")


class FirewallError(UserError):
    """nft refused or failed; the message is one line."""


@dataclass(frozen=True)
class Firewall:
    """Everything the ruleset depends on."""

    table: str  # unique per sandbox
    agent_if: str  # the proxy side's end of the agent's link
    agent_ip: IPv4Address
    proxy_ip: IPv4Address  # the proxy side's address on that link
    explicit_port: int
    transparent_port: int
    dns_port: int

    def __post_init__(self) -> None:
        if not _TABLE.fullmatch(self.table):
            raise ConfigError(f"not an nftables table name: {self.table!r}")
        if not _IFACE.fullmatch(self.agent_if):
            raise ConfigError(f"not an interface name: {self.agent_if!r}")
        ports = (self.explicit_port, self.transparent_port, self.dns_port)
        if not all(0 < port < 65536 for port in ports) or len(set(ports)) != 3:
            raise ConfigError(f"agentlog's ports must be three different ports: {ports}")


def ruleset(fw: Firewall) -> str:
    """The table as `nft -f` text; applying it replaces any table of the same name."""
    agent = f'iifname "{fw.agent_if}"'
    ipv4 = f"{agent} meta nfproto ipv4"
    from_agent = f"ip saddr {fw.agent_ip} ip daddr {fw.proxy_ip}"
    sets = "\n".join(_bypass_set(name) for name in BYPASS_SETS)
    # The first two lines make the load a replace: create if missing, then delete,
    # then the new table, all in nft's one transaction.
    return f"""table inet {fw.table}
delete table inet {fw.table}
table inet {fw.table} {{
{sets}
\tcounter {UNRECORDED} {{
\t}}

\tchain agent_nat {{
\t\ttype nat hook prerouting priority dstnat; policy accept;
\t\t{ipv4} meta l4proto {{ tcp, udp }} th dport 53 redirect to :{fw.dns_port}
\t\t{ipv4} ip daddr {fw.proxy_ip} tcp dport {{ {fw.explicit_port}, {fw.dns_port} }} return
\t\t{ipv4} meta l4proto tcp redirect to :{fw.transparent_port}
\t}}

\t# After agent_nat: a redirected packet is seen with the address it was redirected to.
\tchain agent_filter {{
\t\ttype filter hook prerouting priority dstnat + 10; policy accept;
\t\t{agent} {from_agent} tcp dport {{ {fw.explicit_port}, {fw.transparent_port}, \
{fw.dns_port} }} accept
\t\t{agent} {from_agent} udp dport {fw.dns_port} accept
\t\t{ipv4} meta l4proto {_PORTED} update @bypass_ports4 \
{{ meta l4proto . ip daddr . th dport }} drop
\t\t{ipv4} meta l4proto != {_PORTED} update @bypass_other4 {{ meta l4proto . ip daddr }} drop
\t\t{agent} meta nfproto ipv6 meta l4proto {_PORTED} update @bypass_ports6 \
{{ meta l4proto . ip6 daddr . th dport }} drop
\t\t{agent} meta nfproto ipv6 meta l4proto != {_PORTED} update @bypass_other6 \
{{ meta l4proto . ip6 daddr }} drop
\t\t{agent} counter name {UNRECORDED} drop
\t}}

\tchain agent_forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\t# agent_filter has dropped all the agent sends that is not for us; this says it again.
\t\t{agent} drop
\t\toifname "{fw.agent_if}" drop
\t}}
}}
"""


def _bypass_set(name: str) -> str:
    address = "ipv4_addr" if name.endswith("4") else "ipv6_addr"
    port = " . inet_service" if "ports" in name else ""
    return f"""\tset {name} {{
\t\ttype inet_proto . {address}{port}
\t\tsize {FLOW_LIMIT}
\t\tflags dynamic,timeout
\t\ttimeout {FLOW_TIMEOUT}
\t\tcounter
\t}}
"""


def apply(fw: Firewall) -> None:
    """Load the table (replacing one of the same name) in one transaction."""
    _nft(ruleset(fw))


def remove(table: str) -> None:
    """Delete the table in one transaction; no such table is not an error."""
    if not _TABLE.fullmatch(table):
        raise ConfigError(f"not an nftables table name: {table!r}")
    _nft(f"table inet {table}\ndelete table inet {table}\n")


def _nft(text: str) -> None:
    if shutil.which("nft") is None:
        raise FirewallError("nft not found: install nftables")
    done = subprocess.run(["nft", "-f", "-"], input=text, capture_output=True, text=True)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        raise FirewallError(f"nft: {reason}")
