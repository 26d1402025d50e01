#!/usr/bin/env python3
"""Benchmark what packet capture costs the proxy, and whether tcpdump drops packets.

Two setups, each one `agentlog proxy` process started once, measured in rounds
(the setups alternating, medians reported):

  agentlog          agentlog proxy --logs TMP/agentlog-logs --listen IP_A:PORT ...
  agentlog+capture  the same with its own logs dir and port, plus --capture IF_C

Topology. As in production, the agent (the load client) sits in its own network
namespace joined to the host by a veth pair, and capture runs on the host side
of that veth (tests/netns.py AgentNamespace, addresses in 10.231.0.0/16 on links
it creates). Each setup gets its *own* namespace and veth:

  netns A: client -> veth IF_A -> agentlog         (10.231.a.1) -> upstream 127.0.0.1
  netns C: client -> veth IF_C -> agentlog+capture (10.231.c.1) -> upstream 127.0.0.1

Why two namespaces rather than one veth and stop/start: tcpdump captures a whole
interface, so with one shared veth the capturing proxy's tcpdump (and rotator)
would also see, and pay for, the packets of the no-capture runs, and the
comparison would be skewed. Stopping and restarting the capturing proxy between
rounds would avoid that but would pay its startup every round and split
tcpdump's counters over several lives. With two veths both proxies start once
and stay up; the capturing proxy captures only its own traffic (the proxy ->
upstream leg on loopback is not captured, as in production, where capture is on
the agent's interface). The fake upstream (tests/fakes, hypercorn) is shared
and stays on 127.0.0.1. No other address is ever used.

Metrics, per setup:

  load    requests/s and p50/p99 latency of `GET /hello` over --conns keep-alive
          HTTPS connections through CONNECT tunnels (bench/loadgen.py, run
          inside the namespace)
  CPU     from /proc during each load window: the proxy process (all threads),
          and separately its children tcpdump and the rotator (the capturing
          proxy's `capture` pipeline; found by their ppid); reported in % and in
          CPU us per request. Also: the proxy's user/kernel split, how often its
          event loop is preempted (nonvoluntary context switches), and "other",
          the CPU the rest of the machine used (noise; warned about above 10%)
  drops   after the rounds the capturing proxy is stopped with SIGTERM; its
          journal's `capture` `stop` event carries tcpdump's own counters
          (captured, received_by_filter, dropped_by_kernel). The packets in the
          capture_*.pcap files are counted too.
  burst   then a fresh capturing proxy (new logs dir) gets a short full-rate
          burst with more connections (--burst-conns), stopped the same way, for
          its own drop counts; the no-capture proxy gets the same burst for a
          req/s reference.

Targets: capture rps / no-capture rps >= 0.95, dropped_by_kernel == 0. The
ratio is the median over the rounds of each round's ratio (the two setups of a
round run back to back, which cancels the slow drift of a shared VM's speed);
the ratio of the median req/s is printed too.

--pin is a diagnostic: the proxies on the last CPU, and the upstream, the
client, tcpdump and the rotator on the others. It shows how much of capture's
cost comes from tcpdump and the rotator being scheduled on the proxy's CPU.

Needs root (network namespaces, tcpdump). Results: a table on stdout and
bench/results/capture.json (every round's raw numbers, tcpdump's counters and
the journal's `capture` events). Bounded by an alarm; on Ctrl-C, SIGTERM, error
or timeout it stops its processes and removes its namespaces.

Run:  .venv/bin/python bench/bench_capture.py [--seconds 10] [--rounds 3] [--conns 8]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import loadgen
from common import (
    BIN,
    HOST,
    ROOT,
    announce,
    cpu_text,
    fmt,
    free_port,
    load_parser,
    median,
    stat_fields,
    verdict,
    wait_file_text,
    write_results,
)
from setups import Bench

RESULTS = ROOT / "bench" / "results" / "capture.json"
PLAIN, CAPTURE = "agentlog", "agentlog+capture"
SETUPS = (PLAIN, CAPTURE)
CHILDREN = ("tcpdump", "rotator")  # the capturing proxy's child processes
RATIO_TARGET = 0.95
NOISE_PCT = 10  # warn when the rest of the machine used more CPU than this (% of one)

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


def _used_subnets() -> set[int]:
    out = subprocess.run(["ip", "-4", "-o", "addr"], capture_output=True, text=True).stdout
    return {int(m) for m in re.findall(r"\b10\.231\.(\d+)\.\d+/", out)}


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
    def __init__(
        self, args: argparse.Namespace, tmp: Path, namespaces: dict[str, AgentNamespace]
    ) -> None:
        super().__init__(tmp, pin_map=args.pin_map if args.pin else None)
        self.args = args
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
            if self.args.pin:  # children inherit the proxy's CPU: move them off it
                for pid in kids.values():
                    os.sched_setaffinity(pid, self.args.pin_cpus["rest"])
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


def _us_per_req(res: dict, key: str) -> float:
    pct = res["cpu_pct"].get(key)
    if pct is None or not res["rps"]:
        return float("nan")
    return pct / 100 / res["rps"] * 1e6


def _summarize(runs: list[dict]) -> dict:
    out = {
        "rps": median([x["rps"] for x in runs]),
        "p50_ms": median([x["p50_ms"] for x in runs]),
        "p99_ms": median([x["p99_ms"] for x in runs]),
        "errors": sum(x["errors"] for x in runs),
        "requests": sum(x["requests"] for x in runs),
        "host_busy_pct": median([x["host_busy_pct"] for x in runs]),
    }
    for key in ("proxy", *CHILDREN, "upstream", "client"):
        out[f"{key}_cpu_pct"] = median([x["cpu_pct"].get(key, float("nan")) for x in runs])
        out[f"{key}_us_per_req"] = median([_us_per_req(x, key) for x in runs])
    out["other_pct"] = median([x["other_pct"] for x in runs])
    out["proxy_preemptions_per_s"] = median([x["proxy_preemptions_per_s"] for x in runs])
    out["proxy_sys_share_pct"] = median([x["sys_share_pct"]["proxy"] for x in runs])
    out["proxy_user_us_per_req"] = out["proxy_us_per_req"] * (1 - out["proxy_sys_share_pct"] / 100)
    out["proxy_sys_us_per_req"] = out["proxy_us_per_req"] * out["proxy_sys_share_pct"] / 100
    out["total_us_per_req"] = median(
        [sum(_us_per_req(x, k) for k in ("proxy", *CHILDREN) if k in x["cpu_pct"]) for x in runs]
    )
    return out


def _load_line(label: str, setup: str, res: dict) -> str:
    cpu = cpu_text(res["cpu_pct"])
    return (
        f"{label} {setup:17s} {res['rps']:7.0f} req/s  p50 {res['p50_ms']:6.2f} ms  "
        f"p99 {res['p99_ms']:6.2f} ms  cpu: {cpu}  other {res['other_pct']:.0f}%  "
        f"proxy sys {res['sys_share_pct']['proxy']:.0f}% "
        f"preempted {res['proxy_preemptions_per_s']}/s  errors {res['errors']}"
    )


def run(args: argparse.Namespace) -> dict:
    per_round = args.seconds / args.rounds
    raw: dict[str, list[dict]] = {s: [] for s in SETUPS}
    burst: dict[str, dict] = {}
    drops: dict[str, dict] = {}
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-bench-capture-"))
    bench: CaptureBench | None = None
    try:
        with contextlib.ExitStack() as stack:
            try:
                free = sorted(set(range(1, 250)) - _used_subnets())
                if len(free) < 2:
                    raise RuntimeError("no free 10.231.N.0/30 subnets left")
                tag = f"alb{os.getpid() % 100000}"
                namespaces = {
                    PLAIN: stack.enter_context(AgentNamespace(name=f"{tag}n", subnet=free[-1])),
                    CAPTURE: stack.enter_context(AgentNamespace(name=f"{tag}c", subnet=free[-2])),
                }
                bench = CaptureBench(args, tmp, namespaces)
                stack.callback(bench.cleanup)  # runs before the namespaces go
                bench.start()
                for setup, ns in namespaces.items():
                    print(f"# {setup}: netns {ns.name}, client {ns.agent_ip} -> veth {ns.host_if}")
                for name, cmd in bench.commands.items():
                    print(f"# {name}: {shlex.join(cmd)}")
                print(f"# scratch dir: {tmp}", flush=True)

                for r in range(args.rounds):
                    order = SETUPS if r % 2 == 0 else SETUPS[::-1]
                    for setup in order:
                        res = bench.client(
                            setup, "load", conns=args.conns, seconds=per_round, warmup=args.warmup
                        )
                        raw[setup].append(res)
                        print(_load_line(f"round {r + 1}", setup, res), flush=True)
                bench.check_alive()
                drops["load"] = bench.stop_proxy(CAPTURE)
                print(_drops_line("load", drops["load"]), flush=True)

                if args.burst_seconds > 0:
                    bench.start_proxy(CAPTURE)  # fresh tcpdump: counters for the burst alone
                    print(f"# {CAPTURE} (burst): {shlex.join(bench.commands[CAPTURE])}")
                    for setup in SETUPS:
                        res = bench.client(
                            setup,
                            "load",
                            conns=args.burst_conns,
                            seconds=args.burst_seconds,
                            warmup=args.warmup,
                        )
                        burst[setup] = res
                        print(_load_line("burst  ", setup, res), flush=True)
                    bench.check_alive()
                    drops["burst"] = bench.stop_proxy(CAPTURE)
                    print(_drops_line("burst", drops["burst"]), flush=True)
                commands = dict(bench.commands)
            except BaseException:
                # a second Ctrl-C must not cut the cleanup short
                signal.signal(signal.SIGINT, signal.SIG_IGN)
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                raise
    finally:
        if bench is not None:
            bench.cleanup()  # idempotent; the ExitStack already did it unless start failed
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    medians = {s: _summarize(raw[s]) for s in SETUPS}
    a, c = medians[PLAIN], medians[CAPTURE]
    # The headline: the median over the rounds of capture rps / no-capture rps. The
    # two setups of a round run back to back, so each round's ratio cancels the slow
    # drift of a shared VM's speed; the ratio of the two medians does not (reported
    # too). The spread of the per-round ratios shows the noise.
    paired = [x["rps"] / y["rps"] for x, y in zip(raw[CAPTURE], raw[PLAIN], strict=True)]
    ratio = median(paired)
    result = {
        "raw": raw,
        "medians": medians,
        "ratio_capture_rps_over_plain": ratio,
        "ratio_per_round": paired,
        "ratio_of_median_rps": c["rps"] / a["rps"],
        "cpu_per_req_capture_minus_plain_us": {
            "proxy": c["proxy_us_per_req"] - a["proxy_us_per_req"],
            "tcpdump": c["tcpdump_us_per_req"],
            "rotator": c["rotator_us_per_req"],
            "total": c["total_us_per_req"] - a["total_us_per_req"],
        },
        "drops": {
            k: {f: v for f, v in d.items() if f != "capture_events"} for k, d in drops.items()
        },
        "capture_events": {k: d["capture_events"] for k, d in drops.items()},
        "burst": burst,
        "targets_met": {
            "capture_rps_ratio": ratio >= RATIO_TARGET,
            "dropped_by_kernel_load": _zero(drops.get("load")),
            "dropped_by_kernel_burst": _zero(drops.get("burst")),
        },
        "commands": commands,
        "namespaces": {
            s: {
                "name": ns.name,
                "host_if": ns.host_if,
                "host_ip": ns.host_ip,
                "agent_ip": ns.agent_ip,
            }
            for s, ns in namespaces.items()
        },
    }
    return result


def _zero(d: dict | None) -> bool | None:
    if not d or d.get("dropped_by_kernel") is None:
        return None
    return d["dropped_by_kernel"] == 0


def _drops_line(label: str, d: dict) -> str:
    return (
        f"{label:5s} capture stop: dropped_by_kernel {d['dropped_by_kernel']}  "
        f"captured {d['captured']}  received_by_filter {d['received_by_filter']}  "
        f"in pcap files {d['pcap_packets']} ({d['pcap_files']} files, "
        f"{d['pcap_bytes'] / 1e6:.1f} MB)  restarts {d['restarts']}  "
        f"proxy exit {d['exit_status']}"
    )


def report(result: dict, args: argparse.Namespace) -> None:
    med = result["medians"]
    f = fmt
    print()
    print(
        f"medians of {args.rounds} rounds; load: {args.conns} keep-alive connections, "
        f"{args.seconds:g}s per setup; client in its own netns per setup, over a veth"
    )
    print(
        "CPU: % of one CPU during the load window (other = the rest of the machine: "
        "noise), then CPU us per request; total = proxy + tcpdump + rotator"
    )
    header = (
        f"{'setup':22s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} | "
        f"{'proxy%':>6s} {'tcpd%':>6s} {'rot%':>6s} {'upstr%':>6s} {'clnt%':>6s} {'other%':>6s} | "
        f"{'proxy':>6s} {'tcpd':>5s} {'rot':>5s} {'total':>6s} us/req"
    )
    print(header)
    print("-" * len(header))
    for setup, m in med.items():
        print(
            f"{setup:22s} {f(m['rps'], 0):>7s} {f(m['p50_ms']):>7s} {f(m['p99_ms']):>7s} | "
            f"{f(m['proxy_cpu_pct'], 0):>6s} {f(m['tcpdump_cpu_pct'], 1):>6s} "
            f"{f(m['rotator_cpu_pct'], 1):>6s} {f(m['upstream_cpu_pct'], 0):>6s} "
            f"{f(m['client_cpu_pct'], 0):>6s} {f(m['other_pct'], 0):>6s} | "
            f"{f(m['proxy_us_per_req'], 0):>6s} {f(m['tcpdump_us_per_req'], 0):>5s} "
            f"{f(m['rotator_us_per_req'], 0):>5s} {f(m['total_us_per_req'], 0):>6s}"
        )
    for setup, res in result["burst"].items():
        print(
            f"{'burst ' + setup:22s} {f(res['rps'], 0):>7s} {f(res['p50_ms']):>7s} "
            f"{f(res['p99_ms']):>7s}   ({args.burst_conns} connections, {args.burst_seconds:g}s, "
            f"1 run; proxy {res['cpu_pct'].get('proxy', 0):.0f}%"
            + "".join(f", {k} {res['cpu_pct'][k]:.1f}%" for k in CHILDREN if k in res["cpu_pct"])
            + ")"
        )
    print()
    print("the proxy process, per request: user and kernel CPU, and preemptions of its loop")
    header = f"{'setup':22s} {'user us':>8s} {'sys us':>8s} {'sys %':>6s} {'preempted/s':>12s}"
    print(header)
    print("-" * len(header))
    for setup, m in med.items():
        print(
            f"{setup:22s} {f(m['proxy_user_us_per_req'], 0):>8s} "
            f"{f(m['proxy_sys_us_per_req'], 0):>8s} {f(m['proxy_sys_share_pct'], 1):>6s} "
            f"{f(m['proxy_preemptions_per_s'], 0):>12s}"
        )
    ok = result["targets_met"]
    ratio = result["ratio_capture_rps_over_plain"]
    d = result["cpu_per_req_capture_minus_plain_us"]
    print()
    print(
        f"capture rps / no-capture rps       {ratio:7.3f}   (target >= {RATIO_TARGET})  "
        f"{verdict(ok['capture_rps_ratio'])}   (median; per round: "
        + " ".join(f"{v:.3f}" for v in result["ratio_per_round"])
        + ")"
    )
    print(f"  ratio of the median req/s above  {result['ratio_of_median_rps']:7.3f}")
    if result["burst"]:
        b = result["burst"]
        print(
            f"  same, {args.burst_conns}-connection burst        "
            f"{b[CAPTURE]['rps'] / b[PLAIN]['rps']:7.3f}   (1 run, indicative)"
        )
    print(
        f"capture CPU per request, added     {d['total']:+7.0f} us  = proxy process "
        f"{d['proxy']:+.0f} + tcpdump {d['tcpdump']:.0f} + rotator {d['rotator']:.0f}"
    )
    for label, drop in result["drops"].items():
        key = f"dropped_by_kernel_{label}"
        print(
            f"dropped packets, {label:5s}             {drop['dropped_by_kernel']!s:>7s}   "
            f"(target 0)     {verdict(ok[key])}   captured {drop['captured']}, "
            f"received by filter {drop['received_by_filter']}, in pcap files "
            f"{drop['pcap_packets']}"
        )
    noisy = {s: m["other_pct"] for s, m in med.items() if m["other_pct"] > NOISE_PCT}
    if noisy:
        print(
            f"NOISY: other processes took CPU during the load (median %: {noisy}); "
            "keep the machine idle and run again"
        )
    errors = {s: m["errors"] for s, m in med.items() if m["errors"]}
    if errors:
        print(f"NON-200 / failed responses: {errors}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = load_parser(__doc__)
    p.add_argument(
        "--burst-conns", type=int, default=32, help="connections of the burst (default 32)"
    )
    p.add_argument(
        "--burst-seconds",
        type=float,
        default=3.0,
        help="burst time per setup, after the rounds (default 3; 0 skips)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="diagnostic: proxies on the last CPU; upstream, client, tcpdump and the "
        "rotator on the others (taskset / sched_setaffinity)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, pcaps)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.conns < 1 or args.burst_conns < 1:
        p.error("--rounds, --seconds, --conns and --burst-conns must be positive")
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        p.error("--pin needs at least 2 CPUs")
    args.pin_cpus = {"proxy": cpus[-1:], "rest": cpus[:-1]}
    rest = ",".join(map(str, cpus[:-1]))
    # with --pin, setups.Bench.spawn runs each process named here under `taskset -c CPUS`
    args.pin_map = {PLAIN: str(cpus[-1]), CAPTURE: str(cpus[-1]), "upstream": rest, "client": rest}
    return args


def _stop_signal(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class OutOfTime(BaseException):
    """Raised by SIGALRM; a BaseException so that no `except OSError` swallows it."""


def _out_of_time(signum: int, frame: object) -> None:
    raise OutOfTime("over its time budget")


def main() -> int:
    args = parse_args(sys.argv[1:])
    if not can_make_namespaces():
        print(
            "bench_capture: needs root, `ip` and `iptables` (network namespaces)", file=sys.stderr
        )
        return 2
    if shutil.which("tcpdump") is None:
        print("bench_capture: needs tcpdump on PATH", file=sys.stderr)
        return 2
    command = announce()
    # Hard stop: whatever happens, the script ends by itself (cleanup runs in finally).
    runs = 2 * args.rounds + (2 if args.burst_seconds > 0 else 0)
    budget = 2 * (args.seconds + args.burst_seconds) * 1.5 + runs * (args.warmup + 10) + 120
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.signal(signal.SIGTERM, _stop_signal)
    signal.alarm(int(budget))
    started = time.time()
    try:
        result = run(args)
    except (KeyboardInterrupt, OutOfTime) as e:
        print(
            f"bench_capture: stopped ({e or 'interrupted'}); processes and namespaces removed",
            file=sys.stderr,
        )
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        signal.alarm(0)
    report(result, args)
    tcpdump_version = subprocess.run(
        ["tcpdump", "--version"], capture_output=True, text=True
    ).stdout.splitlines()[:2]
    write_results(args.output, command, started, args, result, tcpdump=tcpdump_version)
    return 0


if __name__ == "__main__":
    sys.exit(main())
