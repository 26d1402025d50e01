"""Cut one request's (or one session's) connections out of the captures, secrets inside.

The result is a pcapng that Wireshark and tshark decrypt with no settings:
only the packets of the exchanges' TCP connections (both legs where they were
captured), and only those connections' TLS secrets from keys.log, embedded
with `editcap --inject-secrets`.
"""

import ipaddress
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import UserError
from agentlog.logsdir import LogsDir
from agentlog.readfile import open_regular

_TOOLS = ("tcpdump", "mergecap", "editcap", "tshark")


class SliceError(UserError):
    """The slice cannot be made; the message is one line for the user."""

    status = 1


class BadAddress(UserError):
    """A record names a connection address that is not IP:port (a tampered journal):
    it never reaches a BPF filter, where it could mean something else."""


Address = tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]


@dataclass(frozen=True)
class Leg:
    a: Address
    b: Address

    def bpf(self) -> str:
        (ha, pa), (hb, pb) = self.a, self.b
        return (
            f"(src host {ha} and src port {pa} and dst host {hb} and dst port {pb}) or "
            f"(src host {hb} and src port {pb} and dst host {ha} and dst port {pa})"
        )


def _closing(exchange: dict, *kinds: str) -> list[dict]:
    """The exchange's closing events of these kinds (a tls_failed exchange's own
    `error` is a string, not one)."""
    return [exchange[k] for k in kinds if isinstance(exchange.get(k), dict)]


def parse_address(text: object) -> Address:
    """`1.2.3.4:80` or `[::1]:80` as the records write them; ValueError if it is not.
    A v4-mapped IPv6 address is its IPv4 address (as tcpdump sees the packets)."""
    if not isinstance(text, str):
        raise ValueError("not a string")
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError("an IPv6 address needs brackets")
    if not sep or not (port.isascii() and port.isdigit()) or int(port) > 65535:
        raise ValueError("no port")
    ip = ipaddress.ip_address(host)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:  # "fe80::1%<anything>": free text in a filter
            raise ValueError("a scoped address")
        ip = ip.ipv4_mapped or ip
    return ip, int(port)


def _address(exchange: dict, event: dict, field: str) -> Address | None:
    value = event.get(field)
    if value is None:
        return None
    try:
        return parse_address(value)
    except ValueError:
        raise BadAddress(
            f"record {exchange.get('id')} names {field} {value!r}, not an IP:port"
        ) from None


def legs_of(exchange: dict) -> set[Leg]:
    """The TCP connections an exchange travelled on: agent<->proxy, proxy<->upstream.
    BadAddress if it names one that is not an address."""
    legs = set()
    closing = next(iter(_closing(exchange, "response", "error")), {})
    for event, a, b in (
        (exchange, "client", "agent_dst"),
        (closing, "upstream_src", "upstream_dst"),
    ):
        ends = _address(exchange, event, a), _address(exchange, event, b)
        if ends[0] and ends[1]:
            legs.add(Leg(ends[0], ends[1]))
    return legs


def bpf_filter(legs: set[Leg]) -> str:
    """A tcpdump filter for exactly these connections (both directions)."""
    return "tcp and (" + " or ".join(f"({leg.bpf()})" for leg in sorted(legs, key=str)) + ")"


def _last_timestamp(exchange: dict) -> str:
    closing = _closing(exchange, "response", "error", "websocket")
    return max(event.get("timestamp", "") for event in [exchange, *closing])


def files_between(logs: LogsDir, first: str, last_timestamp: str) -> list[Path]:
    """`first` and the capture files opened after it, up to the last event's time
    (RFC 3339): a connection may outlive a rotation. UnsafeFile if one of them is
    not a regular file (a symlink planted among them, a FIFO)."""
    order = LogsDir.capture_order
    start = order(first)
    until = re.sub(r"[^0-9T]", "", last_timestamp)[:15].replace("T", "_")
    chosen = [
        path
        for path in logs.capture_files()
        if order(path.name) >= start and (order(path.name) == start or order(path.name)[0] <= until)
    ]
    for path in chosen:
        os.close(open_regular(path))
    return chosen


def _run(*cmd: str | Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["failed"])[-1]
        raise SliceError(f"{Path(str(cmd[0])).name}: {last}")
    return result


def client_randoms(pcap: Path) -> set[str]:
    """The ClientHello randoms in `pcap`: they name its connections' lines in keys.log."""
    out = _run(
        "tshark",
        "-r",
        pcap,
        "-Y",
        "tls.handshake.type == 1",
        "-T",
        "fields",
        "-e",
        "tls.handshake.random",
    ).stdout
    return {r.strip().replace(":", "").lower() for r in out.split() if r.strip()}


def secrets_for(keylog: Path, randoms: set[str]) -> list[str]:
    """keys.log's lines for these ClientHello randoms (UnsafeFile if keys.log is not
    a regular file)."""
    try:
        fd = open_regular(keylog)
    except FileNotFoundError:
        return []
    lines = []
    with open(fd, encoding="ascii", errors="replace") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 3 and parts[1].lower() in randoms:
                lines.append(" ".join(parts))
    return lines


def write_slice(logs: LogsDir, exchanges: Iterable[dict], out: Path) -> int:
    """Write the exchanges' packets to `out` (pcapng); return how many connections."""
    exchanges = list(exchanges)
    legs = set().union(*(legs_of(x) for x in exchanges))
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise SliceError(f"needs {', '.join(missing)} (Debian: apt-get install tcpdump tshark)")
    starts = [x["pcap_file"] for x in exchanges if x.get("pcap_file")]
    if not starts:
        raise SliceError("no capture holds these requests (was the proxy run with --capture?)")
    if not legs:
        raise SliceError("the records name no connection addresses to cut out")
    bpf = bpf_filter(legs)
    with tempfile.TemporaryDirectory(prefix="agentlog-pcap-") as tmp:
        work = Path(tmp)
        parts = []
        first, last = min(starts, key=LogsDir.capture_order), max(map(_last_timestamp, exchanges))
        for i, source in enumerate(files_between(logs, first, last)):
            part = work / f"part{i}.pcap"
            _run("tcpdump", "-r", source, "-w", part, bpf)
            parts.append(part)
        merged = work / "merged.pcap"
        if len(parts) == 1:
            merged = parts[0]
        else:
            _run("mergecap", "-F", "pcap", "-w", merged, *parts)
        keys = work / "keys.log"
        keys.write_text(
            "".join(f"{line}\n" for line in secrets_for(logs.keylog, client_randoms(merged)))
        )
        if keys.stat().st_size:
            _run("editcap", "--inject-secrets", f"tls,{keys}", "-F", "pcapng", merged, out)
        else:
            _run("editcap", "-F", "pcapng", merged, out)
    return len(legs)
