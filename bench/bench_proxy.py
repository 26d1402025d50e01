#!/usr/bin/env python3
"""Benchmark agentlog's proxy against bare mitmdump and a direct connection.

Three setups, all against one local fake HTTPS upstream (tests/fakes, hypercorn):

  direct    client -> upstream
  mitmdump  client -> .venv/bin/mitmdump (lazy, quiet) -> upstream
  agentlog  client -> agentlog proxy (recording into a temp logs dir) -> upstream

Metrics (each measured in rounds, the setups alternating, medians reported):

  load    requests/s and p50/p99 latency of `GET /hello` (5-byte body) over
          --conns keep-alive HTTPS connections (CONNECT tunnels for the proxies),
          each doing one request at a time
  serial  p50/p99 latency of the same request over a single connection
          (latency the proxy adds when it is not saturated)
  sse     time from sending `GET /sse?n=5&hold_ms=200` to the first `data:` line:
          "cold" is the first request on a fresh tunnel (the proxy dials upstream
          lazily, so this includes the upstream TCP+TLS handshake), "warm" the
          second request on the same tunnel

The load generator (bench/loadgen.py) is a small asyncio Protocol client (no
httpx) running in its own process; the upstream and each proxy are separate processes too.
Everything talks to 127.0.0.1 only. Results: a table on stdout and
bench/results/latest.json.

Run:  .venv/bin/python bench/bench_proxy.py [--seconds 10] [--rounds 3] [--conns 8]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

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
from setups import SETUPS, STREAM_SETUP, Bench

RESULTS = ROOT / "bench" / "results" / "latest.json"

# ---------------------------------------------------------------------------


def run(args: argparse.Namespace) -> dict:
    rounds = args.rounds
    per_round = args.seconds / rounds
    serial_per_round = args.serial_seconds / rounds
    sse_runs_per_round = max(1, round(args.sse_runs / rounds)) if args.sse_runs > 0 else 0
    setups = SETUPS + ((STREAM_SETUP,) if args.stream_baseline else ())
    raw: dict[str, dict[str, list[dict]]] = {
        s: {"load": [], "serial": [], "sse": []} for s in setups
    }
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-bench-"))
    bench = Bench(
        tmp, pin_map=args.pin_map if args.pin else None, stream_baseline=args.stream_baseline
    )
    try:
        bench.start()
        for name, cmd in bench.commands.items():
            print(f"# {name}: {shlex.join(cmd)}")
        print(f"# scratch dir: {tmp}", flush=True)
        for r in range(rounds):
            shift = r % len(setups)
            order = setups[shift:] + setups[:shift]  # alternate who goes first
            for setup in order:
                res = bench.client(
                    setup, "load", conns=args.conns, seconds=per_round, warmup=args.warmup
                )
                raw[setup]["load"].append(res)
                print(
                    f"round {r + 1} load   {setup:15s} {res['rps']:8.0f} req/s  "
                    f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms  "
                    f"cpu: {cpu_text(res['cpu_pct'])}  errors {res['errors']}",
                    flush=True,
                )
            if serial_per_round > 0:
                for setup in order:
                    res = bench.client(
                        setup, "load", conns=1, seconds=serial_per_round, warmup=args.warmup
                    )
                    raw[setup]["serial"].append(res)
                    print(
                        f"round {r + 1} serial {setup:15s} {res['rps']:8.0f} req/s  "
                        f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms  "
                        f"cpu: {cpu_text(res['cpu_pct'])}",
                        flush=True,
                    )
            if sse_runs_per_round > 0:
                for setup in order:
                    res = bench.client(
                        setup,
                        "sse",
                        runs=sse_runs_per_round,
                        seconds=args.sse_seconds / rounds,
                        sse_path=args.sse_path,
                    )
                    raw[setup]["sse"].append(res)
                    print(
                        f"round {r + 1} sse    {setup:15s} first event cold "
                        f"{res['cold_ms']:6.2f} ms  warm {res['warm_ms']:6.2f} ms  "
                        f"({res['runs']} runs, {res['errors']} errors)",
                        flush=True,
                    )
        bench.check_alive()
    finally:
        bench.stop()
    journal = bench.logs / "requests.jsonl" if hasattr(bench, "logs") else None
    journal_lines = (
        sum(1 for _ in journal.open("rb")) if journal is not None and journal.exists() else None
    )
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)

    medians: dict[str, dict[str, float]] = {}
    for setup in setups:
        load, serial, sse = raw[setup]["load"], raw[setup]["serial"], raw[setup]["sse"]
        medians[setup] = {
            "rps": median([x["rps"] for x in load]),
            "p50_ms": median([x["p50_ms"] for x in load]),
            "p99_ms": median([x["p99_ms"] for x in load]),
            "serial_p50_ms": median([x["p50_ms"] for x in serial]),
            "serial_p99_ms": median([x["p99_ms"] for x in serial]),
            "sse_first_event_ms": median([v for x in sse for v in x["cold_all_ms"]]),
            "sse_first_event_warm_ms": median([v for x in sse for v in x["warm_all_ms"]]),
            "proxy_cpu_pct": median([x["cpu_pct"].get("proxy", float("nan")) for x in load]),
            # CPU the proxy burns per request (all threads): less noisy than req/s when
            # other processes steal CPU, since it does not depend on how much CPU it got
            "proxy_cpu_us_per_req": median(
                [x["cpu_pct"].get("proxy", float("nan")) / 100 / x["rps"] * 1e6 for x in load]
            ),
            "upstream_cpu_pct": median([x["cpu_pct"]["upstream"] for x in load]),
            "client_cpu_pct": median([x["cpu_pct"]["client"] for x in load]),
            "errors": sum(x["errors"] for kind in raw[setup].values() for x in kind),
        }
    a, m, d = medians["agentlog"], medians["mitmdump"], medians["direct"]
    ratios = {
        "agentlog_rps_over_mitmdump": a["rps"] / m["rps"],
        "agentlog_p50_minus_mitmdump_ms": a["p50_ms"] - m["p50_ms"],
        "agentlog_cpu_per_req_over_mitmdump": a["proxy_cpu_us_per_req"] / m["proxy_cpu_us_per_req"],
        "agentlog_serial_p50_minus_mitmdump_ms": a["serial_p50_ms"] - m["serial_p50_ms"],
        "agentlog_sse_minus_direct_ms": a["sse_first_event_ms"] - d["sse_first_event_ms"],
        "mitmdump_sse_minus_direct_ms": m["sse_first_event_ms"] - d["sse_first_event_ms"],
    }
    if STREAM_SETUP in medians:
        st = medians[STREAM_SETUP]
        ratios["mitmdump_stream_rps_over_mitmdump"] = st["rps"] / m["rps"]
        ratios["agentlog_rps_over_mitmdump_stream"] = a["rps"] / st["rps"]
        ratios["mitmdump_stream_sse_minus_direct_ms"] = (
            st["sse_first_event_ms"] - d["sse_first_event_ms"]
        )
    limits = {  # ratio: (bound, is it a lower bound?)
        "agentlog_rps_over_mitmdump": (0.9, True),
        "agentlog_p50_minus_mitmdump_ms": (1.0, False),
        "agentlog_sse_minus_direct_ms": (20.0, False),
    }
    targets: dict[str, bool | None] = {
        k: None if ratios[k] != ratios[k] else ratios[k] >= b if low else ratios[k] <= b
        for k, (b, low) in limits.items()
    }
    return {
        "raw": raw,
        "medians": medians,
        "ratios": ratios,
        "targets_met": targets,
        "agentlog_journal_lines": journal_lines,
        "commands": bench.commands,
    }


def report(result: dict, args: argparse.Namespace) -> None:
    med = result["medians"]
    print()
    print(
        f"medians of {args.rounds} rounds; load: {args.conns} keep-alive connections, "
        f"{args.seconds:g}s per setup; serial: 1 connection, {args.serial_seconds:g}s; "
        f"sse: {args.sse_path}"
    )
    print(
        "columns: load req/s, p50, p99 | 1 connection p50, p99 | SSE first event, cold and warm "
        "tunnel | CPU during load: proxy %, proxy CPU us per request, upstream %, client %"
    )
    header = (
        f"{'setup':15s} {'req/s':>8s} {'p50 ms':>7s} {'p99 ms':>7s} "
        f"{'1c p50':>7s} {'1c p99':>7s} {'sse 1st':>8s} {'sse warm':>8s} "
        f"{'proxy%':>7s} {'us/req':>7s} {'upstr%':>7s} {'client%':>7s}"
    )
    print(header)
    print("-" * len(header))
    for setup in med:
        m = med[setup]
        print(
            f"{setup:15s} {fmt(m['rps'], 0):>8s} {fmt(m['p50_ms']):>7s} {fmt(m['p99_ms']):>7s} "
            f"{fmt(m['serial_p50_ms']):>7s} {fmt(m['serial_p99_ms']):>7s} "
            f"{fmt(m['sse_first_event_ms']):>8s} {fmt(m['sse_first_event_warm_ms']):>8s} "
            f"{fmt(m['proxy_cpu_pct'], 0):>7s} {fmt(m['proxy_cpu_us_per_req'], 0):>7s} "
            f"{fmt(m['upstream_cpu_pct'], 0):>7s} "
            f"{fmt(m['client_cpu_pct'], 0):>7s}"
        )
    r, ok = result["ratios"], result["targets_met"]
    print()
    print(
        f"agentlog rps / mitmdump rps        {r['agentlog_rps_over_mitmdump']:7.3f}   "
        f"(target >= 0.9)   {verdict(ok['agentlog_rps_over_mitmdump'])}"
    )
    print(
        f"agentlog p50 - mitmdump p50        {r['agentlog_p50_minus_mitmdump_ms']:+7.2f} ms "
        f"(target <= 1 ms)  {verdict(ok['agentlog_p50_minus_mitmdump_ms'])}"
    )
    print(
        f"  same, 1 connection               {r['agentlog_serial_p50_minus_mitmdump_ms']:+7.2f} ms"
    )
    print(
        f"agentlog / mitmdump CPU per request {r['agentlog_cpu_per_req_over_mitmdump']:6.3f}   "
        "(proxy CPU time / requests, all threads)"
    )
    print(
        f"agentlog sse 1st event - direct    {r['agentlog_sse_minus_direct_ms']:+7.2f} ms "
        f"(target <= 20 ms) {verdict(ok['agentlog_sse_minus_direct_ms'])}"
    )
    print(f"  mitmdump sse 1st event - direct  {r['mitmdump_sse_minus_direct_ms']:+7.2f} ms")
    if "mitmdump_stream_rps_over_mitmdump" in r:
        print(f"{STREAM_SETUP} rps / mitmdump rps {r['mitmdump_stream_rps_over_mitmdump']:7.3f}")
        print(f"agentlog rps / {STREAM_SETUP} rps {r['agentlog_rps_over_mitmdump_stream']:7.3f}")
        print(
            f"  {STREAM_SETUP} sse 1st event - direct "
            f"{r['mitmdump_stream_sse_minus_direct_ms']:+7.2f} ms"
        )
    errors = {s: med[s]["errors"] for s in med if med[s]["errors"]}
    if errors:
        print(f"NON-200 / failed responses: {errors}")
    print(f"agentlog journal lines written: {result['agentlog_journal_lines']}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = load_parser(__doc__)
    p.add_argument(
        "--serial-seconds",
        type=float,
        default=5.0,
        help="single-connection latency time per setup (default 5; 0 skips)",
    )
    p.add_argument(
        "--sse-runs",
        type=int,
        default=30,
        help="SSE runs per setup, split over the rounds (default 30; 0 skips)",
    )
    p.add_argument(
        "--sse-seconds",
        type=float,
        default=15.0,
        help="time limit of the SSE runs per setup, split over the rounds (default 15)",
    )
    p.add_argument("--sse-path", default="/sse?n=5&hold_ms=200")
    p.add_argument(
        "--stream-baseline",
        action="store_true",
        help=f"add a 4th setup, {STREAM_SETUP}: mitmdump --set stream_large_bodies=1 "
        "(streams every body, as agentlog does)",
    )
    p.add_argument(
        "--pin",
        action="store_true",
        help="pin with taskset: proxies on the last CPU, client+upstream on the rest",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, certs)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.conns < 1:
        p.error("--rounds, --seconds and --conns must be positive")
    cpus = sorted(os.sched_getaffinity(0))
    if args.pin and len(cpus) < 2:
        p.error("--pin needs at least 2 CPUs")
    rest = ",".join(map(str, cpus[:-1]))
    args.pin_map = {
        "mitmdump": str(cpus[-1]),
        STREAM_SETUP: str(cpus[-1]),
        "agentlog": str(cpus[-1]),
        "upstream": rest,
        "client": rest,
    }
    return args


def _out_of_time(signum: int, frame: object) -> None:
    raise TimeoutError("bench_proxy: over its time budget, stopping")


def main() -> int:
    args = parse_args(sys.argv[1:])
    command = announce()
    # Hard stop: whatever happens, the script ends by itself.
    per_setup = args.seconds + args.serial_seconds + args.sse_seconds
    budget = 3 * per_setup * 1.5 + args.rounds * 3 * 3 * (args.warmup + 10) + 60
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(int(budget))
    started = time.time()
    result = run(args)
    signal.alarm(0)
    report(result, args)
    write_results(args.output, command, started, args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
