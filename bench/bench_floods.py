#!/usr/bin/env python3
"""Benchmark agentlog's proxy under floods: an unrelated client stays fast, memory bounded.

One agentlog proxy (default limits, recording into a temp logs dir) in front of
the local fake HTTPS upstream (tests/fakes). Phases alternate in rounds:
`baseline` (no attack) and each attack of --attacks. In every phase:

  probe   an unrelated client (its own process, from 127.0.0.2: another address
          than the attacker's, so not under the attacker's connection cap)
          makes `GET /hello` through one keep-alive CONNECT tunnel every
          --probe-every seconds; reported as p50/p95/max latency
  memory  the proxy's RSS (VmRSS sampled every 50 ms; the phase's peak)
  journal how much it grew during the phase

Attacks (ATTACKS; each a coroutine run in a process of its own from 127.0.0.1
until the phase ends, counting into `counts`; same shape as bench_attacks.py's):

  slowloris    as many half-open connections as the attacker can hold: each of
               --slowloris-conns sockets sends half a request line, then a byte
               a second; when the proxy closes one (refused past the cap, or cut
               at the header timeout) it is opened again after --slowloris-pause
  rapid_reset  HTTP/2 streams opened and reset at once in a loop (100 to a
               write, CVE-2023-44487) on --reset-conns tunnels; a tunnel the
               proxy closes (GOAWAY) is opened again at once
  endless_head --head-conns connections each send an HTTP/1 request head that
               never ends, as fast as the proxy takes it; one the proxy
               closes (431) is opened again at once

After each attack phase the proxy is given time to catch up (its journal stops
growing). Everything talks to 127.0.0.1/8 only. Results: a table on stdout and
bench/results/floods.json.

Run:  .venv/bin/python bench/bench_floods.py [--seconds 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
from common import (
    BIN,
    HOST,
    ROOT,
    announce,
    fmt,
    free_port,
    median,
    percentile,
    proc_cpu,
    verdict,
    wait_file_text,
    write_results,
)
from loadgen import _Conn
from setups import Bench

RESULTS = ROOT / "bench" / "results" / "floods.json"
ATTACK_FLAG, PROBE_FLAG = "--_attack", "--_probe"
ATTACKER, PROBE_SOURCE = "127.0.0.1", "127.0.0.2"
TARGET_RSS_MB = 300
TARGET_P95_MS = 100

# ---------------------------------------------------------------------------
# Attacks: each runs in its own process until `end` (perf_counter), counting into
# `counts`; it prints "ready" once set up.
# ---------------------------------------------------------------------------


async def _slowloris(job: dict, end: float, counts: dict[str, int]) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # hold as many as we can
    counts.update(opened=0, closed_at_once=0, cut_later=0, connect_errors=0, held_max=0)
    held = 0
    print("ready", flush=True)

    async def slot() -> None:
        nonlocal held
        while time.perf_counter() < end:
            try:
                reader, writer = await asyncio.open_connection(
                    HOST, job["port"], local_addr=(ATTACKER, 0)
                )
            except OSError:
                counts["connect_errors"] += 1
                await asyncio.sleep(job["pause"])
                continue
            counts["opened"] += 1
            held += 1
            counts["held_max"] = max(counts["held_max"], held)
            opened = time.perf_counter()
            writer.write(b"GET http://127.0.0.1/ HT")  # half a request line
            while time.perf_counter() < end:
                try:
                    if not await asyncio.wait_for(reader.read(1024), 1.0):
                        break  # the proxy closed it
                except TimeoutError:
                    if writer.is_closing():
                        break
                    writer.write(b"T")  # one more byte: never idle, never done
                except OSError:
                    break
            held -= 1
            at_once = time.perf_counter() - opened < 0.5
            counts["closed_at_once" if at_once else "cut_later"] += 1
            writer.close()
            await asyncio.sleep(job["pause"])

    await asyncio.gather(*(slot() for _ in range(job["conns"])))


async def _h2_tunnel(job: dict) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(HOST, job["port"], local_addr=(ATTACKER, 0))
    target = f"{HOST}:{job['upstream_port']}"
    writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    if not (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 200"):
        raise RuntimeError("CONNECT refused")
    context = ssl.create_default_context(cafile=job["cafile"])
    context.set_alpn_protocols(["h2"])
    await writer.start_tls(context, server_hostname=HOST)
    return reader, writer


async def _rapid_reset(job: dict, end: float, counts: dict[str, int]) -> None:
    counts.update(streams=0, connections=0, closed_by_proxy=0)
    print("ready", flush=True)

    async def one() -> None:
        while time.perf_counter() < end:
            counts["connections"] += 1
            await _reset_streams(job, end, counts)
            counts["closed_by_proxy"] += time.perf_counter() < end

    await asyncio.gather(*(one() for _ in range(job["conns"])))


async def _reset_streams(job: dict, end: float, counts: dict[str, int]) -> None:
    """One tunnel: open and reset streams, 100 to a write, until the proxy closes it."""
    reader, writer = await _h2_tunnel(job)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    writer.write(conn.data_to_send())
    headers = [
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", f"{HOST}:{job['upstream_port']}"),
        (":path", "/hello?rapid-reset"),
    ]
    terminated = asyncio.Event()

    async def read() -> None:
        try:
            while data := await reader.read(65536):
                events = conn.receive_data(data)
                if not writer.is_closing():
                    writer.write(conn.data_to_send())
                if any(isinstance(e, h2.events.ConnectionTerminated) for e in events):
                    break
        except (OSError, h2.exceptions.ProtocolError):
            pass
        terminated.set()

    reading = asyncio.ensure_future(read())
    try:
        while time.perf_counter() < end and not terminated.is_set() and not writer.is_closing():
            for _ in range(100):
                stream_id = conn.get_next_available_stream_id()
                conn.send_headers(stream_id, headers, end_stream=True)
                conn.reset_stream(stream_id, h2.errors.ErrorCodes.CANCEL)
            writer.write(conn.data_to_send())
            counts["streams"] += 100
            await writer.drain()
            await asyncio.sleep(0)  # drain does not yield while the buffer has room
    except (OSError, h2.exceptions.ProtocolError):
        pass
    reading.cancel()
    writer.close()


async def _endless_head(job: dict, end: float, counts: dict[str, int]) -> None:
    counts.update(connections=0, mib_sent=0, answered_431=0)
    chunk = b"a" * 65536
    print("ready", flush=True)

    async def one() -> None:
        sent = 0
        while time.perf_counter() < end:
            reader, writer = await asyncio.open_connection(
                HOST, job["port"], local_addr=(ATTACKER, 0)
            )
            counts["connections"] += 1
            writer.write(b"GET http://127.0.0.1/ HTTP/1.1\r\nX-Endless: ")
            try:
                while time.perf_counter() < end and not writer.is_closing():
                    writer.write(chunk)
                    await writer.drain()
                    sent += len(chunk)
                    counts["mib_sent"], sent = counts["mib_sent"] + sent // 2**20, sent % 2**20
            except OSError:
                pass
            try:
                reply = await asyncio.wait_for(reader.read(64), 1.0)
                counts["answered_431"] += reply.startswith(b"HTTP/1.1 431")
            except (OSError, TimeoutError):
                pass
            writer.close()

    await asyncio.gather(*(one() for _ in range(job["conns"])))


ATTACKS: dict[str, Callable[[dict, float, dict[str, int]], Awaitable[None]]] = {
    "slowloris": _slowloris,
    "rapid_reset": _rapid_reset,
    "endless_head": _endless_head,
}


def attack_main(job: dict) -> None:
    """Run one attack until the orchestrator closes our stdin (or job["seconds"])."""
    end = time.perf_counter() + job["seconds"]
    counts: dict[str, int] = {}

    async def main() -> None:
        attack = asyncio.ensure_future(ATTACKS[job["attack"]](job, end, counts))
        stop = asyncio.ensure_future(asyncio.to_thread(sys.stdin.read))
        await asyncio.wait((attack, stop), return_when=asyncio.FIRST_COMPLETED)
        attack.cancel()
        if attack.done() and not attack.cancelled() and attack.exception():
            raise attack.exception()  # type: ignore[misc]

    asyncio.run(main())
    print(json.dumps(counts), flush=True)
    os._exit(0)  # the stdin reader thread may still be blocked


# ---------------------------------------------------------------------------
# The probe: an unrelated client's requests, one at a time
# ---------------------------------------------------------------------------


async def _open_from(job: dict, source: str) -> _Conn:
    """loadgen's connection, through a CONNECT tunnel, from `source`."""
    loop = asyncio.get_running_loop()
    transport, conn = await loop.create_connection(_Conn, HOST, job["port"], local_addr=(source, 0))
    target = f"{HOST}:{job['upstream_port']}"
    await conn.roundtrip(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode(), "connect")
    context = ssl.create_default_context(cafile=job["cafile"])
    context.set_alpn_protocols(["http/1.1"])
    conn.transport = await loop.start_tls(transport, conn, context, server_hostname=HOST)
    return conn


async def _probe(job: dict) -> dict:
    request = f"GET /hello?probe HTTP/1.1\r\nHost: {HOST}:{job['upstream_port']}\r\n\r\n"
    conn = await _open_from(job, PROBE_SOURCE)
    end = time.perf_counter() + job["seconds"]
    latencies: list[float] = []
    errors = 0
    while time.perf_counter() < end:
        try:
            if conn.must_close:  # hypercorn ends a connection after 1000 requests
                conn.close()
                conn = await _open_from(job, PROBE_SOURCE)
            t0 = await asyncio.wait_for(conn.roundtrip(request.encode()), 10)
            latencies.append((conn.done_at - t0) * 1000)
            errors += not conn.status_ok
        except (OSError, TimeoutError):
            errors += 1
            conn.close()
            conn = await _open_from(job, PROBE_SOURCE)
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


def not_probe_bytes(journal: Path, offset: int) -> int:
    """Bytes of the journal past `offset` that are not the probe's exchanges: what the
    attack (and the proxy's own events) wrote."""
    with journal.open("rb") as f:
        f.seek(offset)
        lines = f.read().splitlines(keepends=True)
    events = [json.loads(line) for line in lines]
    probes = {e["id"] for e in events if e["event"] == "request" and "probe" in e["path"]}
    return sum(len(line) for line, e in zip(lines, events, strict=True) if e["id"] not in probes)


class FloodBench(Bench):
    """The fake upstream and one agentlog proxy; phases of attack and probe against them."""

    def __init__(self, tmp: Path, args: argparse.Namespace) -> None:
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
                *self.args.proxy_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "agentlog.err").open("w"),
        )
        wait_file_text(self.tmp / "agentlog.err", "listening on", proxy, 30)
        self.job = {
            "port": port,
            "cafile": str(self.logs / "ca.crt"),
            "upstream_port": self.upstream_port,
        }

    def _child(self, flag: str, job: dict) -> subprocess.Popen:
        cmd = [sys.executable, str(Path(__file__).resolve()), flag, json.dumps(job)]
        return subprocess.Popen(
            cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )

    def _attack_job(self, attack: str) -> dict:
        args = self.args
        conns = {"slowloris": args.slowloris_conns, "rapid_reset": args.reset_conns}.get(
            attack, args.head_conns
        )
        return {
            **self.job,
            "attack": attack,
            "conns": conns,
            "pause": args.slowloris_pause,
            "seconds": args.seconds + args.ramp + 120,
        }

    def phase(self, attack: str | None) -> dict:
        """One phase: the attack (if any) under way, the probe measuring, memory sampled."""
        self.check_alive()
        args = self.args
        journal = self.logs / "requests.jsonl"
        size_before = journal.stat().st_size
        attacker = None
        if attack is not None:
            attacker = self._child(ATTACK_FLAG, self._attack_job(attack))
            assert attacker.stdout is not None
            if attacker.stdout.readline().strip() != "ready":
                raise RuntimeError(f"attack {attack} did not start")
        proxy_pid = self.procs["agentlog"].pid
        peak = 0.0
        ramp_end = time.monotonic() + (args.ramp if attacker else 0)
        while time.monotonic() < ramp_end:  # in full swing before we measure
            peak = max(peak, rss_mb(proxy_pid))
            time.sleep(0.05)
        cpu_before, started = proc_cpu(proxy_pid), time.monotonic()
        probe = self._child(
            PROBE_FLAG, {**self.job, "seconds": args.seconds, "every": args.probe_every}
        )
        while probe.poll() is None:
            peak = max(peak, rss_mb(proxy_pid))
            time.sleep(0.05)
        out, _ = probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"probe failed ({probe.returncode})")
        measured = json.loads(out)
        cpu = proc_cpu(proxy_pid) - cpu_before
        wall = time.monotonic() - started
        counts: dict = {}
        if attacker is not None:
            try:
                attacker_out, _ = attacker.communicate("", timeout=30)  # closing stdin stops it
            except subprocess.TimeoutExpired:
                attacker.kill()
                attacker_out, _ = attacker.communicate()
            lines = attacker_out.strip().splitlines()
            counts = json.loads(lines[-1]) if lines else {}
            self.settle()
        lat = sorted(measured["latencies_ms"])
        return {
            "attack": attack or "baseline",
            "probes": len(lat),
            "probe_errors": measured["errors"],
            "p50_ms": percentile(lat, 0.50),
            "p95_ms": percentile(lat, 0.95),
            "max_ms": lat[-1] if lat else float("nan"),
            "proxy_rss_mb": round(peak, 1),
            "proxy_cpu_pct": round(100 * cpu / wall, 1),
            "journal_growth_bytes": journal.stat().st_size - size_before,
            "journal_not_probe_bytes": not_probe_bytes(journal, size_before),
            "attack_counts": counts,
        }

    def settle(self, quiet: float = 1.5, limit: float = 60.0) -> None:
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

    def cut_offs(self) -> dict[str, int]:
        """The journal's `connection` events, summed per action."""
        sums: dict[str, int] = {}
        for line in (self.logs / "requests.jsonl").read_bytes().splitlines():
            event = json.loads(line)
            if event["event"] == "connection":
                sums[event["action"]] = sums.get(event["action"], 0) + event["count"]
        return sums


def run(args: argparse.Namespace) -> dict:
    phases: list[dict] = []
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-bench-floods-"))
    bench = FloodBench(tmp, args)
    try:
        bench.start()
        bench.phase(None)  # warm-up: TLS, the first connections; not reported
        for r in range(args.rounds):
            for attack in (None, *args.attacks):
                result = bench.phase(attack)
                result["round"] = r
                phases.append(result)
                print(_line(result), flush=True)
        cut_offs = bench.cut_offs()
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"phases": phases, "cut_offs": cut_offs}


def _line(p: dict) -> str:
    return (
        f"  round {p['round']} {p['attack']:<11} p50 {fmt(p['p50_ms'])} ms"
        f"  p95 {fmt(p['p95_ms'])} ms  max {fmt(p['max_ms'], 1)} ms"
        f"  errors {p['probe_errors']}  proxy CPU {p['proxy_cpu_pct']}%  RSS {p['proxy_rss_mb']} MB"
        f"  journal +{p['journal_growth_bytes']} B ({p['journal_not_probe_bytes']} B not the"
        f" probe's)  {p['attack_counts'] or ''}"
    )


def summarize(phases: list[dict]) -> dict[str, dict]:
    by_attack: dict[str, list[dict]] = {}
    for p in phases:
        by_attack.setdefault(p["attack"], []).append(p)
    rows = {}
    for attack, ps in by_attack.items():
        counts: dict[str, int] = {}
        for p in ps:
            for k, v in p["attack_counts"].items():
                counts[k] = max(v, counts.get(k, 0)) if k == "held_max" else counts.get(k, 0) + v
        rows[attack] = {
            "p50_ms": median([p["p50_ms"] for p in ps]),
            "p95_ms": median([p["p95_ms"] for p in ps]),
            "worst_p95_ms": max(p["p95_ms"] for p in ps),
            "max_ms": max(p["max_ms"] for p in ps),
            "probe_errors": sum(p["probe_errors"] for p in ps),
            "proxy_rss_mb": max(p["proxy_rss_mb"] for p in ps),
            "proxy_cpu_pct": median([p["proxy_cpu_pct"] for p in ps]),
            "journal_growth_bytes": median([p["journal_growth_bytes"] for p in ps]),
            "journal_not_probe_bytes": max(p["journal_not_probe_bytes"] for p in ps),
            "attack_counts": counts,
        }
    return rows


def report(rows: dict[str, dict], cut_offs: dict[str, int]) -> None:
    print()
    print(
        "| phase | probe p50 ms | p95 ms | worst p95 ms | max ms | probe errors "
        "| proxy CPU % | proxy peak RSS MB | journal growth, not the probe's (worst phase) "
        "| attack (all rounds) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for attack, r in rows.items():
        counts = ", ".join(f"{k} {v}" for k, v in r["attack_counts"].items()) or "-"
        print(
            f"| {attack} | {fmt(r['p50_ms'])} | {fmt(r['p95_ms'])} | {fmt(r['worst_p95_ms'])} "
            f"| {fmt(r['max_ms'], 1)} | {r['probe_errors']} | {r['proxy_cpu_pct']:.0f} "
            f"| {r['proxy_rss_mb']:.0f} "
            f"| {r['journal_not_probe_bytes'] / 1024:.1f} KiB | {counts} |"
        )
    print()
    worst_rss = max(r["proxy_rss_mb"] for r in rows.values())
    worst_p95 = max(r["worst_p95_ms"] for r in rows.values())
    print(f"target: proxy RSS < {TARGET_RSS_MB} MB: {worst_rss:.0f} MB", end="  ")
    print(verdict(worst_rss < TARGET_RSS_MB))
    print(f"target: unrelated p95 < {TARGET_P95_MS} ms (worst phase): {worst_p95:.1f} ms", end="  ")
    print(verdict(worst_p95 < TARGET_P95_MS))
    print(f"cut off, from the journal's connection events: {cut_offs}")


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
    p.add_argument("--slowloris-conns", type=int, default=1000, help="sockets held (1000)")
    p.add_argument("--slowloris-pause", type=float, default=1.0, help="s before reopening one (1)")
    p.add_argument("--reset-conns", type=int, default=4, help="rapid-reset tunnels (4)")
    p.add_argument("--head-conns", type=int, default=4, help="endless-head connections (4)")
    p.add_argument("--probe-every", type=float, default=0.02, help="probe pause, s (0.02)")
    p.add_argument("--ramp", type=float, default=1.0, help="attack seconds before measuring (1)")
    p.add_argument(
        "--proxy-args",
        type=str.split,
        default=[],
        help="more `agentlog proxy` options, one string (default: none, the default limits)",
    )
    p.add_argument("--output", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = p.parse_args(argv)
    unknown = set(args.attacks) - set(ATTACKS)
    if unknown:
        p.error(f"unknown attacks: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == ATTACK_FLAG:
        attack_main(json.loads(sys.argv[2]))
        return 0
    if len(sys.argv) == 3 and sys.argv[1] == PROBE_FLAG:
        probe_main(json.loads(sys.argv[2]))
        return 0
    args = parse_args(sys.argv[1:])
    command = announce()
    started = time.time()
    result = run(args)
    rows = summarize(result["phases"])
    report(rows, result["cut_offs"])
    write_results(args.output, command, started, args, {"summary": rows, **result})
    return 0


if __name__ == "__main__":
    sys.exit(main())
