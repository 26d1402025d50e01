#!/usr/bin/env python3
"""Benchmark a client sandboxed by `agentlog run` against the same client on the host.

Three setups, one local fake HTTPS upstream (tests/fakes, hypercorn, on
127.0.0.1), named upstream.test; both proxies allow only that name and --route
it to the fake:

  explicit     client in `agentlog run` (as nobody) -> HTTPS_PROXY, a CONNECT
               tunnel over the sandbox's veth -> agentlog -> upstream
  transparent  the same client ignoring the proxy variables: upstream.test:443,
               resolved by agentlog's DNS, redirected by the sandbox's firewall
               to agentlog's transparent listener -> upstream
  host         the same client on the host -> `agentlog proxy` on 127.0.0.1
               (CONNECT) -> upstream: the baseline

One `agentlog run` serves both sandboxed setups (its command is
bench/loadgen.py --serve, a copy the sandbox user can read, run by the system's
python3); it captures its veth, as every run does, and the host proxy does not
capture. Metrics, measured in --rounds rounds with the setups' order rotating,
medians reported:

  load    requests/s and p50/p99 latency of `GET /hello` over --conns keep-alive
          HTTPS connections, each with one request in flight
  serial  p50/p99 latency over a single connection (the latency the sandbox
          adds when the proxy is not saturated)

Targets: explicit and transparent req/s >= 0.9 x host. Afterwards: `agentlog
audit` on the sandbox's logs (every captured flow accounted for), nothing named
after the sandbox left (exit 1 otherwise), and the host's namespaces, links and
rulesets compared with before (tests/hoststate.py).

Run (as root):  .venv/bin/python bench/bench_sandbox.py [--seconds 10] [--rounds 3]
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
from collections.abc import Iterator
from pathlib import Path

from common import BIN, ROOT, announce, cpu_text, fmt, load_parser, median, verdict, write_results
from sandbox_setups import CHILDREN, ON_HOST, SANDBOXED, SETUPS, SandboxBench, client_copy

sys.path.insert(0, str(ROOT))
from agentlog.sandbox import leftovers  # noqa: E402
from tests import hoststate  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sandbox.json"
TARGET = 0.9


def run(args: argparse.Namespace) -> dict:
    per_round = args.seconds / args.rounds
    serial_per_round = args.serial_seconds / args.rounds
    raw: dict[str, dict[str, list[dict]]] = {s: {"load": [], "serial": []} for s in SETUPS}
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-bench-sandbox-"))
    client_dir = client_copy()
    host_before = hoststate.snapshot()
    bench = SandboxBench(tmp, client_dir)
    try:
        bench.start()
        for name, cmd in bench.commands.items():
            print(f"# {name}: {shlex.join(cmd)}")
        print(f"# sandboxed client: uid {bench.ready['uid']}, {bench.ready['env']}")
        print(f"# scratch dir: {tmp}; client copy: {client_dir}", flush=True)
        for r in range(args.rounds):
            order = SETUPS[r % 3 :] + SETUPS[: r % 3]
            for kind, seconds, conns in (
                ("load", per_round, args.conns),
                ("serial", serial_per_round, 1),
            ):
                if seconds <= 0:
                    continue
                for setup in order:
                    res = bench.client(
                        setup, "load", conns=conns, seconds=seconds, warmup=args.warmup
                    )
                    raw[setup][kind].append(res)
                    print(
                        f"round {r + 1} {kind:6s} {setup:11s} {res['rps']:8.0f} req/s  "
                        f"p50 {res['p50_ms']:6.2f} ms  p99 {res['p99_ms']:6.2f} ms  "
                        f"cpu: {cpu_text(res['cpu_pct'])}  errors {res['errors']}",
                        flush=True,
                    )
        bench.check_alive()
    finally:
        with unstoppable():
            bench.stop()
            after = checks(bench, host_before)
            shutil.rmtree(client_dir, ignore_errors=True)
            if not args.keep:
                shutil.rmtree(tmp, ignore_errors=True)
    return {**summary(raw), "after": after, "commands": bench.commands}


@contextlib.contextmanager
def unstoppable() -> Iterator[None]:
    """The teardown is not cut short by a second signal (it bounds its own waits)."""
    stops = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGALRM)
    saved = {sig: signal.signal(sig, signal.SIG_IGN) for sig in stops}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def checks(bench: SandboxBench, host_before: dict[str, list[str]]) -> dict:
    """What the sandbox left: its exit status, its audit, the host's state."""
    logs = bench.logs_of.get(SANDBOXED[0])
    audit = None
    if logs is not None and logs.exists():
        started = time.monotonic()
        done = subprocess.run(
            [str(BIN / "agentlog"), "audit", "--logs", str(logs)], capture_output=True, text=True
        )
        audit = {
            "status": done.returncode,
            "said": (done.stdout + done.stderr).strip().splitlines()[-3:],
            "seconds": round(time.monotonic() - started, 1),
        }
    # Ours: anything still named after the sandbox (namespace, links, table, files).
    left = bench.sandbox_name in leftovers.sandbox_names() if bench.sandbox_name else False
    changed = hoststate.differences(host_before, hoststate.snapshot())
    if left:
        print(f"THE SANDBOX {bench.sandbox_name} IS STILL THERE: sudo agentlog clean")
    if changed:  # on a shared machine: someone's dockerd, say
        print(f"the host changed meanwhile (not the sandbox's own parts):\n{changed}")
    else:
        print("host: namespaces, links, nft ruleset and iptables as before", flush=True)
    return {
        "sandbox_exit_status": bench.sandbox_status,
        "audit": audit,
        "sandbox_left": left,
        "host_changed": changed,
    }


def summary(raw: dict[str, dict[str, list[dict]]]) -> dict:
    def per_req_us(x: dict, name: str) -> float:
        return x["cpu_pct"].get(name, float("nan")) / 100 / x["rps"] * 1e6

    medians = {}
    for setup in SETUPS:
        load, serial = raw[setup]["load"], raw[setup]["serial"]
        medians[setup] = {
            "rps": median([x["rps"] for x in load]),
            "p50_ms": median([x["p50_ms"] for x in load]),
            "p99_ms": median([x["p99_ms"] for x in load]),
            "serial_rps": median([x["rps"] for x in serial]),
            "serial_p50_ms": median([x["p50_ms"] for x in serial]),
            "serial_p99_ms": median([x["p99_ms"] for x in serial]),
            "proxy_cpu_pct": median([x["cpu_pct"]["proxy"] for x in load]),
            "proxy_cpu_us_per_req": median([per_req_us(x, "proxy") for x in load]),
            "capture_cpu_us_per_req": median(
                [sum(per_req_us(x, c) for c in CHILDREN) for x in load]
            ),
            "proxy_sys_share_pct": median([x["proxy_sys_share_pct"] for x in load]),
            "client_cpu_pct": median([x["cpu_pct"]["client"] for x in load]),
            "errors": sum(x["errors"] for kind in raw[setup].values() for x in kind),
        }
    host = medians[ON_HOST]
    ratios: dict[str, float] = {}
    for setup in SANDBOXED:
        ratios[f"{setup}_rps_over_host"] = medians[setup]["rps"] / host["rps"]
        # the setups of a round run back to back: their ratio is steadier than the medians'
        rounds = zip(raw[setup]["load"], raw[ON_HOST]["load"], strict=True)
        ratios[f"{setup}_rps_over_host_per_round"] = median(
            [a["rps"] / b["rps"] for a, b in rounds]
        )
        ratios[f"{setup}_p50_minus_host_ms"] = medians[setup]["p50_ms"] - host["p50_ms"]
        ratios[f"{setup}_serial_p50_minus_host_ms"] = (
            medians[setup]["serial_p50_ms"] - host["serial_p50_ms"]
        )
    targets = {f"{s}_rps_over_host": ratios[f"{s}_rps_over_host"] >= TARGET for s in SANDBOXED}
    return {"raw": raw, "medians": medians, "ratios": ratios, "targets_met": targets}


def report(result: dict, args: argparse.Namespace) -> None:
    med, r = result["medians"], result["ratios"]
    print()
    print(
        f"medians of {args.rounds} rounds; load: {args.conns} keep-alive connections, "
        f"{args.seconds:g}s per setup; 1 connection: {args.serial_seconds:g}s per setup"
    )
    header = (
        f"{'setup':12s} {'req/s':>7s} {'p50 ms':>7s} {'p99 ms':>7s} {'1c req/s':>8s} "
        f"{'1c p50':>7s} {'1c p99':>7s} {'proxy%':>7s} {'us/req':>7s} {'sys%':>5s} {'capt us':>7s} "
        f"{'client%':>7s}"
    )
    print(header)
    print("-" * len(header))
    for setup, m in med.items():
        print(
            f"{setup:12s} {fmt(m['rps'], 0):>7s} {fmt(m['p50_ms']):>7s} {fmt(m['p99_ms']):>7s} "
            f"{fmt(m['serial_rps'], 0):>8s} {fmt(m['serial_p50_ms']):>7s} "
            f"{fmt(m['serial_p99_ms']):>7s} {fmt(m['proxy_cpu_pct'], 0):>7s} "
            f"{fmt(m['proxy_cpu_us_per_req'], 0):>7s} {fmt(m['proxy_sys_share_pct'], 0):>5s} "
            f"{fmt(m['capture_cpu_us_per_req'], 0):>7s} "
            f"{fmt(m['client_cpu_pct'], 0):>7s}"
        )
    print(
        "(us/req: the proxy's CPU per request, sys%: the kernel's share of it; "
        "capt us: tcpdump's and the rotator's CPU per request)"
    )
    print()
    for setup in SANDBOXED:
        print(
            f"{setup:11s} req/s / host req/s  {r[f'{setup}_rps_over_host']:6.3f} "
            f"(per round {r[f'{setup}_rps_over_host_per_round']:.3f})  (target >= {TARGET})  "
            f"{verdict(result['targets_met'][f'{setup}_rps_over_host'])}"
        )
        print(
            f"{setup:11s} p50 - host p50       {ms(r[f'{setup}_p50_minus_host_ms'])}  "
            f"1 connection {ms(r[f'{setup}_serial_p50_minus_host_ms'])}"
        )
    errors = {s: m["errors"] for s, m in med.items() if m["errors"]}
    if errors:
        print(f"NON-200 / failed responses: {errors}")
    after = result["after"]
    print(f"agentlog run exit status: {after['sandbox_exit_status']}")
    if after["audit"] is not None:
        audit = after["audit"]
        print(f"agentlog audit: exit {audit['status']} in {audit['seconds']}s: {audit['said']}")
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


def ms(difference: float) -> str:
    return "-" if difference != difference else f"{difference:+6.2f} ms"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = load_parser(__doc__)
    p.add_argument(
        "--serial-seconds",
        type=float,
        default=5.0,
        help="single-connection time per setup, split over the rounds (default 5; 0 skips)",
    )
    p.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, certs)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.conns < 1:
        p.error("--rounds, --seconds and --conns must be positive")
    if os.geteuid() != 0:
        p.error("agentlog run makes a network namespace: run this as root")
    return args


class Stopped(Exception):
    """Over the time budget, or told to stop: unwinds through the teardown."""


def _stop(signum: int, frame: object) -> None:
    why = "over its time budget" if signum == signal.SIGALRM else signal.strsignal(signum)
    raise Stopped(f"bench_sandbox: {why}, stopping")


def main() -> int:
    args = parse_args(sys.argv[1:])
    command = announce()
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"# load average at the start: {load}", flush=True)
    # Hard stop: whatever happens, the script ends by itself. Running out of time,
    # SIGTERM and Ctrl-C unwind through the teardown.
    budget = 3 * (args.seconds + args.serial_seconds) * 1.5 + args.rounds * 6 * 15 + 120
    for sig in (signal.SIGALRM, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop)
    signal.alarm(int(budget))
    started = time.time()
    try:
        result = run(args)
    except Stopped as e:
        print(e, file=sys.stderr)
        return 1
    signal.alarm(0)
    report(result, args)
    write_results(args.output, command, started, args, result, load_at_start=load)
    return 1 if result["after"]["sandbox_left"] else 0


if __name__ == "__main__":
    sys.exit(main())
