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
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from capture_setups import (
    CAPTURE,
    CHILDREN,
    PLAIN,
    SETUPS,
    CaptureBench,
    enter_namespaces,
    missing_tools,
)
from common import (
    ROOT,
    announce,
    cpu_text,
    fmt,
    load_parser,
    median,
    verdict,
    write_results,
)

RESULTS = ROOT / "bench" / "results" / "capture.json"
RATIO_TARGET = 0.95
NOISE_PCT = 10  # warn when the rest of the machine used more CPU than this (% of one)


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
                namespaces = enter_namespaces(stack)
                bench = CaptureBench(
                    tmp,
                    namespaces,
                    pin_map=args.pin_map if args.pin else None,
                    children_cpus=args.pin_cpus["rest"] if args.pin else None,
                )
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
    missing = missing_tools()
    if missing:
        print(f"bench_capture: {missing}", file=sys.stderr)
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
