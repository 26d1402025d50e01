"""Cut one request's (or one session's) connections out of the captures, secrets inside.

The result is a pcapng that Wireshark and tshark decrypt with no settings:
only the packets of the exchanges' TCP connections (both legs where they were
captured), and only those connections' TLS secrets from keys.log, embedded
with `editcap --inject-secrets`.
"""

import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from agentlog.errors import UserError
from agentlog.logsdir import LogsDir

_TOOLS = ("tcpdump", "mergecap", "editcap", "tshark")


class SliceError(UserError):
    """The slice cannot be made; the message is one line for the user."""

    status = 1


@dataclass(frozen=True)
class Leg:
    a: tuple[str, int]
    b: tuple[str, int]

    def bpf(self) -> str:
        (ha, pa), (hb, pb) = self.a, self.b
        return (
            f"(src host {ha} and src port {pa} and dst host {hb} and dst port {pb}) or "
            f"(src host {hb} and src port {pb} and dst host {ha} and dst port {pa})"
        )


def _split(address: str | None) -> tuple[str, int] | None:
    if not address:
        return None
    host, _, port = address.rpartition(":")
    host = host.strip("[]").removeprefix("::ffff:")
    return (host, int(port)) if host and port.isdigit() else None


def legs_of(exchange: dict) -> set[Leg]:
    """The TCP connections an exchange travelled on: agent<->proxy, proxy<->upstream."""
    legs = set()
    closing: dict = next((exchange[k] for k in ("response", "error") if k in exchange), {})
    for a, b in (
        (exchange.get("client"), exchange.get("agent_dst")),
        (closing.get("upstream_src"), closing.get("upstream_dst")),
    ):
        ends = _split(a), _split(b)
        if ends[0] and ends[1]:
            legs.add(Leg(ends[0], ends[1]))
    return legs


def _last_timestamp(exchange: dict) -> str:
    return max(
        [exchange.get("timestamp", "")]
        + [exchange[k]["timestamp"] for k in ("response", "error", "websocket") if k in exchange]
    )


def files_between(logs: LogsDir, first: str, last_timestamp: str) -> list[Path]:
    """`first` and the capture files opened after it, up to the last event's time
    (RFC 3339): a connection may outlive a rotation."""
    order = LogsDir.capture_order
    start = order(first)
    until = re.sub(r"[^0-9T]", "", last_timestamp)[:15].replace("T", "_")
    return [
        path
        for path in logs.capture_files()
        if order(path.name) >= start and (order(path.name) == start or order(path.name)[0] <= until)
    ]


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
    if not keylog.exists():
        return []
    lines = []
    for line in keylog.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].lower() in randoms:
            lines.append(line)
    return lines


def write_slice(logs: LogsDir, exchanges: Iterable[dict], out: Path) -> int:
    """Write the exchanges' packets to `out` (pcapng); return how many connections."""
    exchanges = list(exchanges)
    missing = [t for t in _TOOLS if shutil.which(t) is None]
    if missing:
        raise SliceError(f"needs {', '.join(missing)} (Debian: apt-get install tcpdump tshark)")
    starts = [x["pcap_file"] for x in exchanges if x.get("pcap_file")]
    if not starts:
        raise SliceError("no capture holds these requests (was the proxy run with --capture?)")
    legs = set().union(*(legs_of(x) for x in exchanges))
    if not legs:
        raise SliceError("the records name no connection addresses to cut out")
    bpf = "tcp and (" + " or ".join(f"({leg.bpf()})" for leg in sorted(legs, key=str)) + ")"
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
