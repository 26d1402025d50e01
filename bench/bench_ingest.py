#!/usr/bin/env python3
"""The UI's indexer alone: `agentlog reindex` (a cold build) of a synthetic journal,
timed in wall and CPU seconds, a few runs each, optionally beside another version.

    .venv/bin/python bench/bench_ingest.py                        # 100,001 events, ~1 min
    .venv/bin/python bench/bench_ingest.py --exchanges 500000     # 1,000,001 events
    .venv/bin/python bench/bench_ingest.py --unique-bodies        # no body read twice
    .venv/bin/python bench/bench_ingest.py --baseline-src OLD/src # OLD's indexer too

The journal is tests/fakes/journal.py's (the one bench_ui.py uses: realistic
headers, a JSON body on every fifth exchange). Its bodies repeat (2,000 of them)
unless --unique-bodies; the indexer reads a body once per ref it has not seen
lately, so unique bodies are the harder case. Each run is a fresh process on the
same journal with index.db removed first; the report gives the median of the
runs, events per wall second and per CPU second (user + system: what the
machine's other load changes least), the peak RSS, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import BIN, ROOT, write_results

sys.path.insert(0, str(ROOT))
from tests.fakes.journal import JournalMaker  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "ingest.json"


def reindex(logs: Path, src: Path | None) -> dict:
    """One cold build in a fresh process: wall and CPU seconds, peak RSS."""
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (logs / name).unlink(missing_ok=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(BIN / "python"), "-m", "agentlog", "reindex", "--logs", str(logs)],
        env=env,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own CPU time and peak RSS
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"reindex failed ({proc.returncode})")
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": usage.ru_maxrss / 1024}


def measure(logs: Path, events: int, src: Path | None, runs: int) -> dict:
    results = [reindex(logs, src) for _ in range(runs)]
    wall = statistics.median(r["wall_s"] for r in results)
    cpu = statistics.median(r["cpu_s"] for r in results)
    return {
        "runs": results,
        "wall_s": wall,
        "cpu_s": cpu,
        "events_per_s": events / wall,
        "events_per_cpu_s": events / cpu,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "load_after": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exchanges", type=int, default=50_000, help="request+response pairs")
    parser.add_argument("--unique-bodies", action="store_true", help="no body stored twice")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, help="another checkout's src/ to compare")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="agentlog-bench-ingest-") as tmp:
        logs = Path(tmp)
        bodies = args.exchanges // 5 + 2 if args.unique_bodies else 2_000
        maker = JournalMaker(logs, bodies=bodies)
        maker.write(args.exchanges)
        events = maker.seq
        size = (logs / "requests.jsonl").stat().st_size / 1e6
        print(f"journal: {events:,} events, {size:.0f} MB, {bodies:,} distinct bodies")
        print(f"load average before: {os.getloadavg()[0]:.1f}")
        result: dict = {"events": events, "journal_mb": size, "bodies": bodies}
        versions = {"this": None, "baseline": args.baseline_src}
        for name, src in versions.items():
            if name == "baseline" and src is None:
                continue
            result[name] = measure(logs, events, src, args.runs)
            r = result[name]
            print(
                f"{name:>8}: {r['events_per_s']:>8,.0f} events/s  "
                f"{r['events_per_cpu_s']:>8,.0f} events/CPU-s  "
                f"(median of {args.runs}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU; "
                f"peak RSS {r['peak_rss_mb']:.0f} MB; load {r['load_after']:.1f})"
            )
        if "baseline" in result:
            this, base = result["this"], result["baseline"]
            wall = this["events_per_s"] / base["events_per_s"]
            cpu = this["events_per_cpu_s"] / base["events_per_cpu_s"]
            result["ratio"] = {"wall": wall, "cpu": cpu}
            print(f"   ratio: x{wall:.2f} (wall), x{cpu:.2f} (CPU)")
    write_results(RESULTS, " ".join(sys.argv), started, args, result)


if __name__ == "__main__":
    main()
