"""The proxy container's entrypoint (docker/Dockerfile.proxy): `agentlog up` as the agent's
only peer on the agent's Docker network.

    python -m agentlog.sandbox.container up      # the entrypoint
    python -m agentlog.sandbox.container health  # the healthcheck: the proxy port answers

The agent's link is a VXLAN tunnel over the agent network, agent to proxy.
Docker's own isolation of an internal network drops, on the host's bridge,
every packet whose destination is outside the network's subnet: an agent
sending to any outside address directly would be stopped there unseen, never
reaching the proxy to be recorded. Inside the tunnel every packet reaches the
proxy container with the destination the agent gave it, so `agentlog run`'s
firewall applies as it is: TCP redirected and recorded, UDP, ICMP and the
rest dropped and recorded as `bypass`.

`up` finds the interface on the agent network (by its subnet,
AGENTLOG_AGENT_SUBNET), makes the tunnel to the agent's address on it
(AGENTLOG_AGENT_IP), puts agentlog's CA certificate alone in /ca (the volume
the agent mounts read-only), loads the sandbox's firewall (firewall.py,
unchanged) on the tunnel and, in the same table, the rules of the agent
network's link itself: from the agent nothing but the tunnel (the rest
dropped, recorded as `bypass`), from anyone else nothing. Then it execs
`agentlog up` with its listeners on the tunnel's address, capture on the
tunnel, the firewall's drops as `bypass` events and the UI on the outside
interface (the one Docker publishes on the host's 127.0.0.1:8888). Options
of the user's or the test's (AGENTLOG_ALLOW, AGENTLOG_ROUTE, ...) pass
through; the guard's deny rules are added to AGENTLOG_DENY.

The guard (as `agentlog run`'s, guard.py): the proxy dials for the agent, so
it must not dial what the agent may not reach directly: the container's own
addresses, its default gateway (the Docker host), loopback, link-local, the
networks it is on and the private ranges (the Docker host's other networks,
other containers, the LAN). A `--route` into a block opens that block but not
the single addresses listed first.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from agentlog.config import parse_route
from agentlog.errors import ConfigError, UserError
from agentlog.logsdir import LogsDir
from agentlog.policy import Policy
from agentlog.sandbox import firewall, guard
from agentlog.sandbox.firewall import Firewall
from agentlog.ui.auth import read_or_create_token

TABLE = "agentlog_docker"
# The tunnel (docker/entrypoint-agent.sh makes the agent's end with the same values).
TUNNEL_IF, TUNNEL_VNI, TUNNEL_PORT, TUNNEL_MTU = "agentlog0", 4231, 4789, 1450
TUNNEL = IPv4Network("10.89.0.0/30")
PROXY_TUNNEL_IP, AGENT_TUNNEL_IP = TUNNEL[1], TUNNEL[2]
EXPLICIT_PORT, TRANSPARENT_PORT, DNS_PORT, UI_PORT = 8080, 8081, 8053, 8888
CA_DIR = Path("/ca")
PRIVATE = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
SUBNET_VARIABLE = "AGENTLOG_AGENT_SUBNET"
AGENT_VARIABLE = "AGENTLOG_AGENT_IP"


@dataclass(frozen=True)
class Interface:
    name: str
    address: IPv4Address
    network: IPv4Network


def interfaces(ip_addr_json: str) -> list[Interface]:
    """The IPv4 interfaces of `ip -j addr` output, loopback left out (pure)."""
    found = []
    for link in json.loads(ip_addr_json or "[]"):
        for info in link.get("addr_info", []):
            if info.get("family") != "inet" or link.get("ifname") == "lo":
                continue
            iface = ipaddress.IPv4Interface(f"{info['local']}/{info['prefixlen']}")
            found.append(Interface(link["ifname"], iface.ip, iface.network))
    return found


def split(found: list[Interface], subnet: IPv4Network) -> tuple[Interface, Interface]:
    """The interface on the agent's subnet, and the outside one (pure)."""
    agent = [i for i in found if i.network == subnet]
    outside = [i for i in found if i.network != subnet]
    if len(agent) != 1:
        raise ConfigError(f"{SUBNET_VARIABLE}={subnet}: no interface of this container is on it")
    if not outside:
        raise ConfigError("the proxy container has no network but the agent's")
    return agent[0], outside[0]


def guard_blocks(
    own: Iterable[IPv4Address], gateways: Iterable[IPv4Address], networks: Iterable[IPv4Network]
) -> list[guard.Network]:
    """Single addresses first (a route never opens them), then the blocks (pure)."""
    single = [ipaddress.ip_network(a) for a in [*own, *gateways]]
    blocks = [ipaddress.ip_network(b) for b in (*guard.ALWAYS, *PRIVATE)]
    return [*dict.fromkeys([*single, *networks, *blocks])]


def deny_patterns(blocks: list[guard.Network], route_targets: list[str]) -> list[str]:
    """The blocks as --deny patterns, but those a route's target is in (pure)."""
    routes = {f"route{i}": (target, 1) for i, target in enumerate(route_targets)}
    policy, _ = guard.guarded(Policy(), blocks, routes)
    kept = [rule.network for rule in policy.rules if rule.network is not None]
    return [str(b) if b.version == 4 else f"[{b}]" for b in kept]


def route_targets(routes: str, resolve=socket.gethostbyname_ex) -> list[str]:
    """The addresses AGENTLOG_ROUTE's targets name (a name resolved: Docker's service names)."""
    targets = []
    for item in routes.replace(",", " ").split():
        _, (host, _) = parse_route(item)
        try:
            ipaddress.ip_address(host.strip("[]"))
            targets.append(host.strip("[]"))
        except ValueError:
            try:
                targets.extend(resolve(host)[2])
            except OSError as e:
                raise ConfigError(f"AGENTLOG_ROUTE: cannot resolve {host}: {e}") from None
    return targets


def link_rules(link: Interface, agent_ip: IPv4Address) -> str:
    """`nft -f` text adding the agent network's own rules to the firewall's table (pure):
    the agent may send the tunnel's datagrams to us and nothing else (recorded as bypass,
    in the firewall's sets); no one else on that network may send us anything."""
    on_link = f'iifname "{link.name}"'
    agent = f"{on_link} ip saddr {agent_ip}"
    ported = "{ tcp, udp, udplite, sctp, dccp }"
    return f"""table inet {TABLE} {{
\tchain link_filter {{
\t\ttype filter hook prerouting priority dstnat + 10; policy accept;
\t\t{agent} ip daddr {link.address} udp dport {TUNNEL_PORT} accept
\t\t{agent} meta l4proto {ported} update @bypass_ports4 \\
{{ meta l4proto . ip daddr . th dport }} drop
\t\t{agent} update @bypass_other4 {{ meta l4proto . ip daddr }} drop
\t\t{on_link} drop
\t}}

\tchain link_forward {{
\t\ttype filter hook forward priority filter; policy accept;
\t\t{on_link} drop
\t\toifname "{link.name}" drop
\t}}
}}
"""


def tunnel_commands(link: Interface, agent_ip: IPv4Address) -> list[list[str]]:
    """The `ip` commands making the proxy's end of the tunnel (pure)."""
    return [
        [
            *("ip", "link", "add", TUNNEL_IF, "type", "vxlan", "id", str(TUNNEL_VNI)),
            *("remote", str(agent_ip), "local", str(link.address)),
            *("dstport", str(TUNNEL_PORT), "dev", link.name),
        ],
        ["ip", "address", "add", f"{PROXY_TUNNEL_IP}/{TUNNEL.prefixlen}", "dev", TUNNEL_IF],
        ["ip", "link", "set", TUNNEL_IF, "mtu", str(TUNNEL_MTU), "up"],
    ]


def up_environment(
    environ: Mapping[str, str], agent: Interface, outside: Interface, deny: list[str]
) -> dict[str, str]:
    """`agentlog up`'s variables: the caller's, then where it listens and captures (pure)."""
    env = dict(environ)
    here = str(agent.address)
    env.update(
        AGENTLOG_LISTEN=f"{here}:{EXPLICIT_PORT}",
        AGENTLOG_TRANSPARENT=f"{here}:{TRANSPARENT_PORT}",
        AGENTLOG_DNS=f"{here}:{DNS_PORT}",
        AGENTLOG_CAPTURE=agent.name,
        AGENTLOG_FIREWALL_TABLE=TABLE,
        AGENTLOG_UI=f"{outside.address}:{UI_PORT}",
    )
    env["AGENTLOG_DENY"] = ",".join(filter(None, [environ.get("AGENTLOG_DENY", ""), *deny]))
    return env


def agent_firewall(agent: Interface, agent_ip: IPv4Address) -> Firewall:
    return Firewall(
        table=TABLE,
        agent_if=agent.name,
        agent_ip=agent_ip,
        proxy_ip=agent.address,
        explicit_port=EXPLICIT_PORT,
        transparent_port=TRANSPARENT_PORT,
        dns_port=DNS_PORT,
    )


def _subnet(environ: Mapping[str, str]) -> IPv4Network:
    text = environ.get(SUBNET_VARIABLE, "")
    try:
        return IPv4Network(text)
    except ValueError:
        raise ConfigError(f"{SUBNET_VARIABLE}={text!r}: the agent network's subnet?") from None


def _agent_ip(environ: Mapping[str, str]) -> IPv4Address:
    text = environ.get(AGENT_VARIABLE, "")
    try:
        return IPv4Address(text)
    except ValueError:
        raise ConfigError(f"{AGENT_VARIABLE}={text!r}: the agent's address?") from None


def _run(command: list[str], stdin: str | None = None) -> None:
    done = subprocess.run(command, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        reason = " ".join(done.stderr.split())[:300] or f"exit status {done.returncode}"
        raise UserError(f"{command[0]} {command[1]}: {reason}")


def _ip_json(*args: str) -> str:
    return subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True).stdout


def _gateways() -> list[IPv4Address]:
    routes = json.loads(_ip_json("-4", "route") or "[]")
    return [IPv4Address(r["gateway"]) for r in routes if "gateway" in r]


def _publish_ca(logs: Path) -> None:
    """agentlog's CA certificate, made if need be, alone in the agent's read-only volume."""
    made = subprocess.run(
        [sys.executable, "-m", "agentlog", "ca", "--logs", str(logs)], capture_output=True
    )
    if made.returncode != 0:
        raise UserError(made.stderr.decode(errors="replace").strip() or "agentlog ca failed")
    for stale in CA_DIR.iterdir():
        if stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale)
        else:
            stale.unlink()
    staged = CA_DIR / ".ca.crt"
    shutil.copyfile(logs / "ca.crt", staged)
    staged.chmod(0o644)
    staged.rename(CA_DIR / "ca.crt")


def say(text: str) -> None:
    print(f"agentlog container: {text}", file=sys.stderr, flush=True)


def up(environ: Mapping[str, str]) -> None:
    link, outside = split(interfaces(_ip_json("addr")), _subnet(environ))
    agent_ip = _agent_ip(environ)
    for command in tunnel_commands(link, agent_ip):
        _run(command)
    tunnel = Interface(TUNNEL_IF, PROXY_TUNNEL_IP, TUNNEL)
    own = [i.address for i in interfaces(_ip_json("addr"))]
    blocks = guard_blocks(own, _gateways(), [tunnel.network, link.network, outside.network])
    deny = deny_patterns(blocks, route_targets(environ.get("AGENTLOG_ROUTE", "")))
    logs = Path(environ.get("AGENTLOG_LOGS", "/logs"))
    _publish_ca(logs)
    firewall.apply(agent_firewall(tunnel, AGENT_TUNNEL_IP))
    _run(["nft", "-f", "-"], link_rules(link, agent_ip))
    env = up_environment(environ, tunnel, outside, deny)
    say(f"the agent's tunnel {TUNNEL_IF} ({PROXY_TUNNEL_IP}) over {link.name} to {agent_ip}")
    # The UI prints its URL with the container's address; the host's is what works.
    token = read_or_create_token(LogsDir(logs))
    say(f"the UI (published on the host's 127.0.0.1): http://localhost:{UI_PORT}/?token={token}")
    os.execvpe(sys.executable, [sys.executable, "-m", "agentlog", "up"], env)


def health() -> int:
    try:
        socket.create_connection((str(PROXY_TUNNEL_IP), EXPLICIT_PORT), timeout=2).close()
    except OSError as e:
        print(f"agentlog proxy not answering on {PROXY_TUNNEL_IP}:{EXPLICIT_PORT}: {e}")
        return 1
    return 0


def main(argv: list[str]) -> int:
    try:
        if argv == ["up"]:
            up(os.environ)
        elif argv == ["health"]:
            return health()
        else:
            raise ConfigError("usage: python -m agentlog.sandbox.container up|health")
    except UserError as e:
        say(str(e))
        return e.status
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
