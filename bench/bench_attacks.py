#!/usr/bin/env python3
"""Benchmark agentlog's proxy under attack: unrelated requests stay fast, memory bounded.

One agentlog proxy (recording into a temp logs dir) in front of the local fake
HTTPS upstream (tests/fakes). Phases alternate in rounds: `baseline` (no
attack) and each attack of --attacks. In every phase:

  probe   a separate client process makes unrelated requests through the
          proxy, one at a time on one keep-alive tunnel: `GET /hello`, then
          `POST /echo` with a small JSON body (its request event, body and
          all, is written ahead), every --probe-every seconds; reported as
          p50/p95/max latency, and as ratios to the same run's baseline
  memory  the proxy's RSS (VmRSS sampled every 50 ms; the phase's peak), and
          the peak of its body worker processes' RSS together

Attacks (ATTACKS below; each is a coroutine run in a process of its own, from
--attack-conns connections, until the phase ends):

  bombs   decompression bombs, 300 MiB of zeros each, in br (481 bytes on the
          wire), gzip (305 KB) and zstd (9.6 KB), in turn: each connection
          POSTs one as a request body (Content-Encoding set; to /echo: a
          server that does not read a body may close the connection early),
          then GETs one as a response (/bomb on the fake), and again

Also reported per phase: the CPU used by the proxy, its body workers, the
upstream and the attack client (% of one CPU), and the machine's load
average, since this machine is shared.

After each attack phase the proxy is given time to catch up (its journal stops
growing) so that the next phase starts from rest. Everything talks to
127.0.0.1 only. Results: a table on stdout and bench/results/attacks.json.

Run:  .venv/bin/python bench/bench_attacks.py [--seconds 5] [--rounds 3] [--attacks bombs]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import loadgen  # noqa: E402
from common import BIN, HOST, ROOT, free_port, no_nan, percentile, proc_cpu, wait_file_text  # noqa: E402
from setups import Bench  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "attacks.json"

ATTACK_FLAG, PROBE_FLAG = "--_attack", "--_probe"
BOMB_MIB = 300
BOMB_CODINGS = ("br", "gzip", "zstd")
TARGET_RSS_MB = 300
TARGET_P95_MS = 100

# ---------------------------------------------------------------------------
# Attacks: each runs in its own process until `end` (perf_counter) or until
# stopped, from job["conns"] connections, counting into `counts`; it prints
# "ready" once set up. Add new ones to ATTACKS.
# ---------------------------------------------------------------------------


def _request(method: str, path: str, job: dict, headers: str = "", body: bytes = b"") -> bytes:
    host = f"{HOST}:{job['upstream_port']}"
    length = f"Content-Length: {len(body)}\r\n" if body or method == "POST" else ""
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n{headers}{length}\r\n"
    return head.encode() + body


async def _bombs(job: dict, end: float, counts: dict[str, int]) -> None:
    """Each connection in turn: a bomb request body, then a bomb response."""
    sys.path.insert(0, str(ROOT))
    from tests.fakes.app import bomb

    bombs = {coding: bomb(coding, BOMB_MIB) for coding in BOMB_CODINGS}
    direct = {**job, "port": job["upstream_port"], "proxied": False, "cafile": job["upstream_ca"]}
    warm = await loadgen.connect(direct)  # the fake makes each bomb once: not while measured
    for coding in BOMB_CODINGS:
        await warm.roundtrip(_request("GET", f"/bomb?coding={coding}&mib={BOMB_MIB}", job))
    warm.close()
    print("ready", flush=True)

    async def one(i: int) -> None:
        conn = await loadgen.connect(job)
        n = i
        while time.perf_counter() < end:
            coding = BOMB_CODINGS[n % len(BOMB_CODINGS)]
            n += 1
            headers = f"Content-Type: text/plain\r\nContent-Encoding: {coding}\r\n"
            for request in (
                _request("POST", f"/echo?bomb={coding}", job, headers, bombs[coding]),
                _request("GET", f"/bomb?coding={coding}&mib={BOMB_MIB}", job),
            ):
                if conn.must_close:
                    conn.close()
                    conn = await loadgen.connect(job)
                await conn.roundtrip(request)
                counts["requests"] += 1
                counts["errors"] += not conn.status_ok
        conn.close()

    await asyncio.gather(*(one(i) for i in range(job["conns"])))


ATTACKS: dict[str, Callable[[dict, float, dict[str, int]], Awaitable[None]]] = {
    "bombs": _bombs,
}


def attack_main(job: dict) -> None:
    """Run one attack until the orchestrator closes our stdin (or job["seconds"])."""
    end = time.perf_counter() + job["seconds"]

    async def until_stdin_closes() -> None:
        await asyncio.to_thread(sys.stdin.read)

    counts = {"requests": 0, "errors": 0}

    async def main() -> None:
        attack = asyncio.ensure_future(ATTACKS[job["attack"]](job, end, counts))
        stop = asyncio.ensure_future(until_stdin_closes())
        await asyncio.wait((attack, stop), return_when=asyncio.FIRST_COMPLETED)
        for task in (attack, stop):
            task.cancel()
        if attack.done() and not attack.cancelled() and attack.exception():
            raise attack.exception()  # type: ignore[misc]

    asyncio.run(main())
    print(json.dumps(counts), flush=True)
    os._exit(0)  # the stdin reader thread may still be blocked


# ---------------------------------------------------------------------------
# The probe: unrelated requests, one at a time
# ---------------------------------------------------------------------------


async def _probe(job: dict) -> dict:
    conn = await loadgen.connect(job)
    get = _request("GET", "/hello?probe=1", job)
    post_body = json.dumps({"model": "m", "max_tokens": 5, "note": "unrelated"}).encode()
    post = _request("POST", "/echo?probe=1", job, "Content-Type: application/json\r\n", post_body)
    end = time.perf_counter() + job["seconds"]
    latencies: list[float] = []
    errors = 0
    while time.perf_counter() < end:
        for request in (get, post):
            if conn.must_close:
                conn.close()
                conn = await loadgen.connect(job)
            t0 = await conn.roundtrip(request)
            latencies.append((conn.done_at - t0) * 1000)
            errors += not conn.status_ok
        await asyncio.sleep(job["every"])
    conn.close()
    return {"latencies_ms": latencies, "errors": errors}


def probe_main(job: dict) -> None:
    print(json.dumps(asyncio.run(_probe(job))), flush=True)


# ---------------------------------------------------------------------------
# The orchestrator
# ---------------------------------------------------------------------------


def rss_mb(pid: int) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU time used so far by each role's processes (a process gone counts 0)."""
    used = {}
    for role, pids in roles.items():
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError, IndexError):
                total += proc_cpu(pid)
        used[role] = total
    return used


def body_workers(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and b"body_worker" in cmdline:
            found.append(int(entry))
    return found


class AttackBench(Bench):
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        super().__init__(tmp)
        self.args = args

    def start(self) -> None:
        ca_file = self.start_upstream()
        port = free_port()
        self.logs = self.tmp / "agentlog-logs"
        proxy = self.spawn(
            "agentlog",
            [
                str(BIN / "agentlog"),
                "proxy",
                "--logs",
                str(self.logs),
                "--listen",
                f"{HOST}:{port}",
                "--upstream-ca",
                str(ca_file),
                "--allow",
                HOST,
                "--body-cap",
                self.args.body_cap,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "agentlog.err").open("w"),
        )
        wait_file_text(self.tmp / "agentlog.err", "listening on", proxy, 30)
        self.job = {
            "port": port,
            "cafile": str(self.logs / "ca.crt"),
            "proxied": True,
            "upstream_port": self.upstream_port,
            "upstream_ca": str(ca_file),
        }

    def _child(self, flag: str, job: dict) -> subprocess.Popen:
        cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(job)]
        return subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def phase(self, attack: str | None) -> dict:
        """One phase: the attack (if any) under way, the probe measuring, memory sampled."""
        self.check_alive()
        args = self.args
        attacker = None
        if attack is not None:
            job = {**self.job, "attack": attack, "conns": args.attack_conns}
            attacker = self._child(ATTACK_FLAG, {**job, "seconds": args.seconds + 120})
            assert attacker.stdout is not None
            if attacker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"attack {attack} did not start")
            time.sleep(args.ramp)  # in full swing before we measure
        proxy_pid = self.procs["agentlog"].pid
        roles = {"proxy": [proxy_pid], "workers": body_workers(proxy_pid)}
        roles["upstream"] = [self.procs["upstream"].pid]
        roles["attack"] = [attacker.pid] if attacker is not None else []
        cpu_before, started = cpu_seconds(roles), time.monotonic()
        probe_job = {**self.job, "seconds": args.seconds, "every": args.probe_every}
        probe = self._child(PROBE_FLAG, probe_job)
        peak_proxy = peak_workers = 0.0
        while probe.poll() is None:
            peak_proxy = max(peak_proxy, rss_mb(proxy_pid))
            peak_workers = max(peak_workers, sum(map(rss_mb, body_workers(proxy_pid))))
            time.sleep(0.05)
        wall = time.monotonic() - started
        cpu = {
            role: round(100 * (used - cpu_before[role]) / wall)
            for role, used in cpu_seconds(roles).items()
        }
        out, _ = probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"probe failed ({probe.returncode})")
        measured = json.loads(out)
        counts = {}
        if attacker is not None:
            attacker_out, _ = attacker.communicate("", timeout=60)  # closing stdin stops it
            counts = json.loads(attacker_out.splitlines()[-1]) if attacker_out.strip() else {}
            self.settle()
        lat = sorted(measured["latencies_ms"])
        return {
            "attack": attack or "baseline",
            "probes": len(lat),
            "probe_errors": measured["errors"],
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "max_ms": lat[-1] if lat else float("nan"),
            "proxy_rss_mb": round(peak_proxy, 1),
            "workers_rss_mb": round(peak_workers, 1),
            "attack_counts": counts,
            "cpu_pct": cpu,
            "loadavg": os.getloadavg()[0],
        }

    def settle(self, quiet: float = 1.0, limit: float = 60.0) -> None:
        """Wait until the journal stops growing: the proxy has caught up."""
        journal = self.logs / "requests.jsonl"
        deadline = time.monotonic() + limit
        size, since = -1, time.monotonic()
        while time.monotonic() < deadline:
            now = journal.stat().st_size
            if now != size:
                size, since = now, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return
            time.sleep(0.1)

    def journal_summary(self) -> dict:
        """What became of the bomb bodies, from the journal."""
        stored = truncated = refused = undecodable = 0
        for line in (self.logs / "requests.jsonl").read_bytes().splitlines():
            event = json.loads(line)
            for name in ("request_body", "response_body"):
                if event.get(name):
                    stored += 1
                    truncated += bool(event.get(f"{name}_truncated"))
                refused += f"{name}_error" in event
                undecodable += f"{name}_undecodable" in event
        sizes = [p.stat().st_size for p in (self.logs / "bodies").rglob("*") if p.is_file()]
        return {
            "bodies_stored": stored,
            "bodies_truncated": truncated,
            "bodies_refused": refused,
            "bodies_undecodable": undecodable,
            "largest_body_file": max(sizes, default=0),
        }


def run(args: argparse.Namespace) -> dict:
    phases: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-attacks-") as tmp:
        bench = AttackBench(args, Path(tmp))
        try:
            bench.start()
            bench.phase(None)  # warm-up: TLS, the first connections; not reported
            for r in range(args.rounds):
                for attack in (None, *args.attacks):
                    result = bench.phase(attack)
                    result["round"] = r
                    phases.append(result)
                    print(_line(result), flush=True)
            summary = bench.journal_summary()
        finally:
            bench.stop()
    return {"phases": phases, "journal": summary}


def _line(p: dict) -> str:
    return (
        f"  round {p['round']} {p['attack']:<9} p50 {p['p50_ms']:.2f} ms  p95 {p['p95_ms']:.2f} ms"
        f"  max {p['max_ms']:.1f} ms  proxy RSS {p['proxy_rss_mb']} MB"
        f"  workers RSS {p['workers_rss_mb']} MB  cpu% {p['cpu_pct']}  load {p['loadavg']:.1f}"
        f"  {p['attack_counts'] or ''}"
    )


def summarize(result: dict, args: argparse.Namespace) -> dict:
    by_attack: dict[str, list[dict]] = {}
    for p in result["phases"]:
        by_attack.setdefault(p["attack"], []).append(p)
    base = by_attack["baseline"]
    base_p50 = statistics.median(p["p50_ms"] for p in base)
    base_p95 = statistics.median(p["p95_ms"] for p in base)
    rows = {}
    for attack, ps in by_attack.items():
        p50 = statistics.median(p["p50_ms"] for p in ps)
        p95 = statistics.median(p["p95_ms"] for p in ps)
        rows[attack] = {
            "p50_ms": p50,
            "p95_ms": p95,
            "worst_p95_ms": max(p["p95_ms"] for p in ps),
            "max_ms": max(p["max_ms"] for p in ps),
            "p50_vs_baseline": p50 / base_p50,
            "p95_vs_baseline": p95 / base_p95,
            "proxy_rss_mb": max(p["proxy_rss_mb"] for p in ps),
            "workers_rss_mb": max(p["workers_rss_mb"] for p in ps),
            "attack_requests": sum(p["attack_counts"].get("requests", 0) for p in ps),
            "probe_errors": sum(p["probe_errors"] for p in ps),
        }
    return rows


def report(rows: dict, journal: dict) -> None:
    print()
    print(
        "| phase | probe p50 ms | p95 ms | max ms | p50 vs baseline | p95 vs baseline "
        "| proxy peak RSS MB | body workers peak RSS MB | attack requests |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for attack, r in rows.items():
        print(
            f"| {attack} | {r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r['max_ms']:.1f} "
            f"| {r['p50_vs_baseline']:.2f}x | {r['p95_vs_baseline']:.2f}x "
            f"| {r['proxy_rss_mb']:.0f} | {r['workers_rss_mb']:.0f} | {r['attack_requests']} |"
        )
    print()
    worst_rss = max(r["proxy_rss_mb"] for r in rows.values())
    worst_p95 = max(r["worst_p95_ms"] for r in rows.values())
    print(f"target: proxy RSS < {TARGET_RSS_MB} MB: {worst_rss:.0f} MB", end="  ")
    print("met" if worst_rss < TARGET_RSS_MB else "MISSED")
    print(
        f"target: unrelated request p95 < {TARGET_P95_MS} ms (worst phase): {worst_p95:.1f} ms",
        end="  ",
    )
    print("  met" if worst_p95 < TARGET_P95_MS else "  MISSED")
    print(f"journal: {journal}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--seconds", type=float, default=5.0, help="probe time per phase (default 5)")
    p.add_argument("--rounds", type=int, default=3, help="rounds of all phases (default 3)")
    p.add_argument(
        "--attacks",
        type=lambda s: [a for a in s.split(",") if a],
        default=list(ATTACKS),
        help=f"comma-separated, of: {', '.join(ATTACKS)} (default all)",
    )
    p.add_argument("--attack-conns", type=int, default=16, help="attacker connections (16)")
    p.add_argument("--probe-every", type=float, default=0.02, help="probe pause, s (0.02)")
    p.add_argument("--ramp", type=float, default=1.0, help="attack seconds before measuring (1)")
    p.add_argument("--body-cap", default="1M", help="the proxy's --body-cap (default 1M)")
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    return args


class OutOfTime(BaseException):
    pass


def _out_of_time(signum: int, frame: object) -> None:
    raise OutOfTime("over its time budget")


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == ATTACK_FLAG:
        attack_main(json.loads(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == PROBE_FLAG:
        probe_main(json.loads(sys.argv[2]))
        return 0
    args = parse_args(sys.argv[1:])
    command = shlex.join(sys.orig_argv)
    print(f"$ {command}")
    print(
        f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    phases = args.rounds * (1 + len(args.attacks)) + 1
    signal.signal(signal.SIGALRM, _out_of_time)
    signal.alarm(int(phases * (args.seconds + args.ramp + 70) + 120))
    started = time.time()
    result = run(args)
    signal.alarm(0)
    rows = summarize(result, args)
    report(rows, result["journal"])
    document = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "summary": rows,
        **result,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(no_nan(document), indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
