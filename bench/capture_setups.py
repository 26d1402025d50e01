"""The two setups bench_capture.py measures: an agentlog proxy without and one
with --capture, each with its load client in a network namespace of its own
(tests/netns.py), joined to the host by its own veth; capture runs on the host
side of that veth, as in production. Also the /proc readings that split the
capturing proxy's CPU from its children's (tcpdump, the rotator).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import loadgen
from common import BIN, HOST, ROOT, free_port, stat_fields, wait_file_text
from setups import Bench

PLAIN, CAPTURE = "agentlog", "agentlog+capture"
SETUPS = (PLAIN, CAPTURE)
CHILDREN = ("tcpdump", "rotator")  # the capturing proxy's child processes

sys.path.insert(0, str(ROOT))
from tests.netns import AgentNamespace, can_make_namespaces  # noqa: E402

# ---------------------------------------------------------------------------
# /proc helpers
# ---------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return stat_fields(f"/proc/{pid}/stat")
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def children_of(pid: int) -> dict[str, int]:
    """The proxy's capture children by role: tcpdump and the rotator (ppid scan)."""
    found: dict[str, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or int(fields[1]) != pid:  # fields[1] is the ppid
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and os.path.basename(cmdline[0]) == b"tcpdump":
            found["tcpdump"] = int(entry)
        elif b"agentlog.capture.rotator" in cmdline:
            found["rotator"] = int(entry)
    return found


def _start_time(pid: int) -> str | None:
    fields = _stat_fields(pid)
    return fields[19] if fields else None  # field 22 of stat: starttime


def _user_sys(pid: int) -> tuple[int, int]:
    """(user, system) jiffies of process `pid`, all threads; (0, 0) if it is gone."""
    fields = _stat_fields(pid)
    return (int(fields[11]), int(fields[12])) if fields else (0, 0)


def _preemptions(pid: int) -> int:
    """Involuntary context switches of the process's main thread (its event loop)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _host_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # without guest time (already in user)
    return total - idle, total


def _pcap_packets(files: list[Path]) -> int:
    """Records in the rotated capture files (checks the rotator lost nothing)."""
    count = 0
    for path in files:
        data = path.read_bytes()
        if len(data) < 24:
            continue
        endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        offset = 24
        while offset + 16 <= len(data):
            caplen = struct.unpack_from(endian + "I", data, offset + 8)[0]
            offset += 16 + caplen
            count += 1
    return count


# ---------------------------------------------------------------------------
# The bench: setups.Bench (upstream, spawn, stop) with proxies in namespaces
# ---------------------------------------------------------------------------


class CaptureBench(Bench):
    """setups.Bench's upstream, with the PLAIN and CAPTURE proxies listening in
    `namespaces` instead of mitmdump and agentlog on 127.0.0.1. With `children_cpus`,
    the capturing proxy's children are moved to those CPUs."""

    def __init__(
        self,
        tmp: Path,
        namespaces: dict[str, AgentNamespace],
        *,
        pin_map: dict[str, str] | None = None,
        children_cpus: list[int] | None = None,
    ) -> None:
        super().__init__(tmp, pin_map=pin_map)
        self.children_cpus = children_cpus
        self.ns = namespaces
        self.logs: dict[str, Path] = {}
        self.seen_children: dict[int, str | None] = {}  # pid -> starttime, for cleanup
        self.lives = 0

    def start(self) -> None:
        self.ca_file = self.start_upstream()
        for setup in SETUPS:
            self.start_proxy(setup)

    def start_proxy(self, setup: str) -> None:
        ns = self.ns[setup]
        self.lives += 1
        port = free_port(ns.host_ip)
        logs = self.tmp / f"{setup.replace('+', '-')}-{self.lives}-logs"
        cmd = [
            str(BIN / "agentlog"),
            "proxy",
            "--logs",
            str(logs),
            "--listen",
            f"{ns.host_ip}:{port}",
            "--upstream-ca",
            str(self.ca_file),
            "--allow",
            HOST,
        ]
        if setup == CAPTURE:
            cmd += ["--capture", ns.host_if]
        err = self.tmp / f"{setup}-{self.lives}.err"
        proc = self.spawn(
            setup,
            cmd,
            stdout=subprocess.DEVNULL,
            stderr=err.open("w"),
            start_new_session=True,  # Ctrl-C reaches only us; we stop it in order
        )
        wait_file_text(err, "listening on", proc, 30)
        self.logs[setup] = logs
        self.targets[setup] = {
            "host": ns.host_ip,
            "port": port,
            "cafile": str(logs / "ca.crt"),
            "proxied": True,
            "upstream_port": self.upstream_port,
        }
        if setup == CAPTURE:
            kids = children_of(proc.pid)
            missing = set(CHILDREN) - set(kids)
            if missing:
                raise RuntimeError(f"{setup}: no {', '.join(sorted(missing))} child process")
            self._remember(kids)

    def _remember(self, kids: dict[str, int]) -> None:
        for pid in kids.values():
            self.seen_children.setdefault(pid, _start_time(pid))

    def client(self, setup: str, kind: str, **fields) -> dict:
        """One loadgen run inside the setup's namespace."""
        self.check_alive()
        proxy = self.procs[setup].pid
        pids = {"proxy": proxy, "upstream": self.procs["upstream"].pid}
        if setup == CAPTURE:
            kids = children_of(proxy)
            self._remember(kids)
            pids.update(kids)
            if self.children_cpus:  # children inherit the proxy's CPU: move them off it
                for pid in kids.values():
                    os.sched_setaffinity(pid, self.children_cpus)
        job = {**self.targets[setup], "kind": kind, "pids": pids, **fields}
        cmd = self.client_command(job)
        busy0, total0 = _host_cpu()
        us0 = {k: _user_sys(pid) for k, pid in pids.items() if k != "upstream"}
        pre0, t0 = _preemptions(proxy), time.monotonic()
        done = self.ns[setup].run(*cmd, check=False, timeout=loadgen.timeout(job))
        pre1, t1 = _preemptions(proxy), time.monotonic()
        us1 = {k: _user_sys(pid) for k, pid in pids.items() if k != "upstream"}
        busy1, total1 = _host_cpu()
        if done.returncode != 0:
            raise RuntimeError(
                f"client for {setup} failed:\n{done.stderr.decode(errors='replace')}"
            )
        result = json.loads(done.stdout)
        result["host_busy_pct"] = round(
            100 * os.cpu_count() * (busy1 - busy0) / max(1, total1 - total0), 1
        )
        # CPU the machine spent on anything but this benchmark's processes (noise)
        result["other_pct"] = round(result["host_busy_pct"] - sum(result["cpu_pct"].values()), 1)
        result["proxy_preemptions_per_s"] = round((pre1 - pre0) / (t1 - t0))
        # Share of each process's CPU spent in the kernel, over the whole client run
        # (warmup included): for the proxy it includes the packet-socket tap that
        # capture adds to every packet it sends or receives on the veth.
        result["sys_share_pct"] = {
            k: round(100 * (us1[k][1] - us0[k][1]) / max(1, sum(us1[k]) - sum(us0[k])), 1)
            for k in us0
        }
        if setup == CAPTURE and set(CHILDREN) - set(result["cpu_pct"]):
            result["note"] = "a capture child was missing (tcpdump restarted?)"
        return result

    def stop_proxy(self, setup: str) -> dict:
        """SIGTERM one proxy, wait for it; its journal's `capture` events and pcap count."""
        proc = self.procs.pop(setup)
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise RuntimeError(f"{setup} did not stop within 30 s of SIGTERM") from None
        logs = self.logs[setup]
        events = []
        journal = logs / "requests.jsonl"
        lines = 0
        if journal.exists():
            for line in journal.open("rb"):
                lines += 1
                if b'"capture"' in line:
                    event = json.loads(line)
                    if event.get("event") == "capture":
                        events.append(event)
        stops = [e for e in events if e.get("action") == "stop"]
        files = sorted(logs.glob("capture_*.pcap"))
        last = stops[-1] if stops else {}
        return {
            "exit_status": proc.returncode,
            "journal_lines": lines,
            "captured": last.get("captured"),
            "received_by_filter": last.get("received_by_filter"),
            "dropped_by_kernel": last.get("dropped_by_kernel"),
            "stop_reason": last.get("reason"),
            "restarts": sum(1 for e in events if e.get("action") == "restart"),
            "pcap_files": len(files),
            "pcap_bytes": sum(f.stat().st_size for f in files),
            "pcap_packets": _pcap_packets(files),
            "capture_events": events,
        }

    def cleanup(self) -> None:
        """Stop every process we started, and any capture child left behind."""
        self.stop()
        for pid, started in self.seen_children.items():
            if started is not None and _start_time(pid) == started:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


# ---------------------------------------------------------------------------
# The machine: tools and namespaces
# ---------------------------------------------------------------------------


def missing_tools() -> str | None:
    """What this machine lacks to run the capture setups, or None."""
    if not can_make_namespaces():
        return "needs root, `ip` and `iptables` (network namespaces)"
    if shutil.which("tcpdump") is None:
        return "needs tcpdump on PATH"
    return None


def enter_namespaces(stack: contextlib.ExitStack) -> dict[str, AgentNamespace]:
    """A namespace per setup (the sandbox's kind: a unique name and a free /30 of
    10.231.0.0/16, which `agentlog clean` knows); `stack` removes them."""
    return {setup: stack.enter_context(AgentNamespace()) for setup in (PLAIN, CAPTURE)}
