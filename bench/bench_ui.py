#!/usr/bin/env python3
"""The web UI on a long run: a journal of 1,000,000 events, indexed and queried
through HTTP, against mitmweb's memory per flow.

    .venv/bin/python bench/bench_ui.py                  # about 3-5 minutes
    .venv/bin/python bench/bench_ui.py --exchanges 50000 --mitmweb-flows 2000   # quick

Reports: the UI's indexer ingest (events/s, from a cold start on the whole
journal), p50/p95 of the list's first page, a domain-filtered page, a domain
glob and free-text searches through HTTP, the live feed's latency (a line
appended to the journal -> its SSE message), the UI process's peak RSS; then
mitmweb's RSS per flow with --mitmweb-flows flows of the same shape through it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from common import (
    BIN,
    HOST,
    ROOT,
    fmt,
    free_port,
    percentile,
    proc_cpu,
    verdict,
    wait_port,
    write_results,
)

sys.path.insert(0, str(ROOT))
from tests.fakes.journal import JournalMaker  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ui.json"
_URL = re.compile(r"agentlog ui: http://([0-9.]+):(\d+)/\?token=(\S+)")


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def start_ui(logs: Path, tmp: Path) -> tuple[subprocess.Popen, str, str]:
    err = tmp / "ui.err"
    proc = subprocess.Popen(
        [str(BIN / "agentlog"), "ui", "--logs", str(logs), "--listen", f"{HOST}:0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
    )
    deadline = time.monotonic() + 60
    while not (m := _URL.search(err.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("ui did not start: " + err.read_text())
        time.sleep(0.05)
    return proc, f"http://{m.group(1)}:{m.group(2)}", m.group(3)


def timed(client: httpx.Client, path: str, params: dict, runs: int) -> dict:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        got = client.get(path, params=params)
        times.append((time.perf_counter() - start) * 1000)
        assert got.status_code == 200, got.text
    items = len(got.json()["items"])
    times.sort()
    return {"p50_ms": percentile(times, 0.5), "p95_ms": percentile(times, 0.95), "items": items}


def live_latency(client: httpx.Client, logs: Path, maker: JournalMaker, samples: int) -> dict:
    """Append one exchange at a time; time until its closed row arrives on /api/live."""
    latencies: list[float] = []
    written: dict[str, float] = {}
    done = threading.Event()

    def reader() -> None:
        with client.stream("GET", "/api/live", timeout=60) as response:
            for line in response.iter_lines():
                if line.startswith("data:"):
                    row = json.loads(line[5:])
                    if row.get("id") in written and row.get("state") == "closed":
                        latencies.append((time.perf_counter() - written.pop(row["id"])) * 1000)
                        if len(latencies) >= samples:
                            done.set()
                            return

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    time.sleep(1)
    with open(logs / "requests.jsonl", "ab", buffering=0) as journal:
        for n in range(samples):
            lines = list(maker.exchange(10_000_000 + n))
            written[json.loads(lines[0])["id"]] = time.perf_counter()
            journal.write(b"".join(lines))
            time.sleep(0.2)
    done.wait(30)
    latencies.sort()
    return {
        "samples": len(latencies),
        "p50_ms": percentile(latencies, 0.5),
        "p95_ms": percentile(latencies, 0.95),
    }


def bench_ui(args: argparse.Namespace, tmp: Path) -> dict:
    logs = tmp / "logs"
    logs.mkdir()
    maker = JournalMaker(logs, bodies=2000)
    started = time.perf_counter()
    journal = maker.write(args.exchanges)
    events = maker.seq
    print(
        f"journal: {events} events, {journal.stat().st_size / 1e6:.0f} MB "
        f"(written in {time.perf_counter() - started:.0f} s)"
    )
    proc, base, token = start_ui(logs, tmp)
    try:
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"})
        started, cpu_before = time.perf_counter(), proc_cpu(proc.pid)
        load_before = os.getloadavg()[0]
        while (status := client.get("/api/status").json())["indexed_seq"] < events:
            time.sleep(0.1)
        ingest_s = time.perf_counter() - started
        ingest_cpu = proc_cpu(proc.pid) - cpu_before  # both its threads, and the API's
        load_after = os.getloadavg()[0]
        print(
            f"ingest: {events / ingest_s:,.0f} events/s ({ingest_s:.1f} s; "
            f"{ingest_cpu:.1f} CPU-s in the UI process: {events / ingest_cpu:,.0f} events/CPU-s; "
            f"load average {load_before:.1f} -> {load_after:.1f})"
        )
        queries = {
            "first page": {},
            "domain page": {"domain": "api.github.com"},
            "domain glob page": {"domain": "*.anthropic.com"},
            "search, common word": {"q": "charlie"},
            "search, rare word": {"q": f"req_{args.exchanges // 2:020d}"},
            "search + domain": {"q": "hotel", "domain": "pypi.org"},
        }
        results = {}
        for name, params in queries.items():
            timed(client, "/api/exchanges", params, 5)  # warm
            results[name] = timed(client, "/api/exchanges", params, args.runs)
        live = live_latency(client, logs, maker, args.live_samples)
        peak = rss_kib(proc.pid, "VmHWM") / 1024
        now = rss_kib(proc.pid) / 1024
        index_mb = (logs / "index.db").stat().st_size / 1e6
        return {
            "events": events,
            "exchanges": status["exchanges"],
            "journal_mb": journal.stat().st_size / 1e6,
            "index_mb": index_mb,
            "ingest_events_per_s": events / ingest_s,
            "ingest_cpu_s": ingest_cpu,
            "ingest_events_per_cpu_s": events / ingest_cpu,
            "ingest_load_average": [load_before, load_after],
            "queries": results,
            "live": live,
            "ui_peak_rss_mb": peak,
            "ui_rss_mb": now,
        }
    finally:
        proc.terminate()
        proc.wait(20)


async def _drive(proxy: str, cafile: str, upstream: int, flows: int, conns: int) -> None:
    remaining = iter(range(flows))

    async def worker() -> None:
        async with httpx.AsyncClient(proxy=proxy, verify=cafile, timeout=30) as client:
            for n in remaining:
                got = await client.get(f"https://127.0.0.1:{upstream}/echo?n={n}")
                assert got.status_code == 200

    await asyncio.gather(*(worker() for _ in range(conns)))


def bench_mitmweb(args: argparse.Namespace, tmp: Path) -> dict:
    from setups import Bench

    bench = Bench(tmp / "mitmweb")
    bench.tmp.mkdir()
    try:
        ca_file = bench.start_upstream()
        port, web_port = free_port(), free_port()
        confdir = bench.tmp / "conf"
        confdir.mkdir()
        proc = bench.spawn(
            "mitmweb",
            [
                str(BIN / "mitmweb"),
                "--listen-host", HOST, "--listen-port", str(port),
                "--web-host", HOST, "--web-port", str(web_port),
                "--set", "web_open_browser=false",
                "--set", "connection_strategy=lazy",
                "--set", f"ssl_verify_upstream_trusted_ca={ca_file}",
                "--set", f"confdir={confdir}",
            ],
            stdout=(bench.tmp / "mitmweb.out").open("w"),
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        wait_port(port, proc, 30)
        time.sleep(1)
        before = rss_kib(proc.pid)
        started = time.perf_counter()
        asyncio.run(
            _drive(
                f"http://{HOST}:{port}",
                str(confdir / "mitmproxy-ca-cert.pem"),
                bench.upstream_port,
                args.mitmweb_flows,
                8,
            )
        )
        elapsed = time.perf_counter() - started
        time.sleep(1)
        after = rss_kib(proc.pid)
        return {
            "flows": args.mitmweb_flows,
            "rss_before_mb": before / 1024,
            "rss_after_mb": after / 1024,
            "kib_per_flow": (after - before) / args.mitmweb_flows,
            "seconds": elapsed,
        }
    finally:
        bench.stop()


def report(ui: dict, mitmweb: dict | None) -> str:
    lines = [
        f"UI, {ui['events']:,} events ({ui['journal_mb']:.0f} MB journal, "
        f"{ui['index_mb']:.0f} MB index.db)",
        f"  ingest               {ui['ingest_events_per_s']:>8,.0f} events/s "
        f"(>= 30,000: {verdict(ui['ingest_events_per_s'] >= 30_000)}; "
        f"{ui['ingest_events_per_cpu_s']:,.0f} per CPU-second, load average "
        f"{ui['ingest_load_average'][0]:.1f} -> {ui['ingest_load_average'][1]:.1f})",
    ]
    for name, q in ui["queries"].items():
        lines.append(
            f"  {name:<20} p50 {fmt(q['p50_ms'], 1):>6} ms  p95 {fmt(q['p95_ms'], 1):>6} ms  "
            f"({q['items']} rows; p95 <= 50 ms: {verdict(q['p95_ms'] <= 50)})"
        )
    live = ui["live"]
    lines.append(
        f"  live, journal -> SSE p50 {fmt(live['p50_ms'], 0)} ms  p95 {fmt(live['p95_ms'], 0)} ms  "
        f"({live['samples']} samples; p95 <= 1000 ms: {verdict(live['p95_ms'] <= 1000)})"
    )
    peak = ui["ui_peak_rss_mb"]
    lines.append(f"  UI peak RSS          {peak:>8.0f} MB (<= 200 MB: {verdict(peak <= 200)})")
    if mitmweb:
        lines.append(
            f"mitmweb, {mitmweb['flows']:,} flows: RSS {mitmweb['rss_before_mb']:.0f} -> "
            f"{mitmweb['rss_after_mb']:.0f} MB, {mitmweb['kib_per_flow']:.1f} KiB per flow "
            f"(x {ui['events'] // 2:,} exchanges = "
            f"{mitmweb['kib_per_flow'] * ui['events'] / 2 / 1024 / 1024:.1f} GiB)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=500_000, help="request+response pairs")
    parser.add_argument("--runs", type=int, default=100, help="requests per query")
    parser.add_argument("--live-samples", type=int, default=30)
    parser.add_argument("--mitmweb-flows", type=int, default=20_000)
    parser.add_argument("--skip-mitmweb", action="store_true")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-ui-") as tmp:
        ui = bench_ui(args, Path(tmp))
        mitmweb = None if args.skip_mitmweb else bench_mitmweb(args, Path(tmp))
    print()
    print(report(ui, mitmweb))
    write_results(RESULTS, " ".join(sys.argv), started, args, {"ui": ui, "mitmweb": mitmweb})


if __name__ == "__main__":
    main()
