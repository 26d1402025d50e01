#!/usr/bin/env python3
"""Where does a proxy spend its CPU? py-spy under the bench_proxy.py load.

Starts the same three processes as bench_proxy.py (fake upstream, mitmdump,
agentlog proxy), drives each proxy with the same keep-alive GET /hello load,
samples it with py-spy (all threads, idle ones left out) and prints:

* CPU per request for mitmdump and agentlog, measured from /proc (all threads,
  and per thread: agentlog's journal writer is a thread of its own),
* GIL-holding samples per request (py-spy --gil: Python code actually running;
  C code that released the GIL, e.g. OpenSSL via cffi, is not in it),
* for agentlog, the GIL time spent inside its own code (src/agentlog/...), by
  file:function, inclusive of everything those functions call,
* the hottest leaf functions of both proxies side by side.

(--gil is used because py-spy counts a thread blocked in SimpleQueue.get(),
like the idle journal writer, as active.)

Needs py-spy (`.venv/bin/pip install py-spy`); may need root or ptrace rights.
Raw collapsed stacks and flamegraphs are kept in bench/results/profile/.

Run:  .venv/bin/python bench/profile_proxy.py [--seconds 15] [--conns 8]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from common import BIN, CLK_TCK, ROOT, stat_fields
from setups import STREAM_SETUP, Bench

OUT = ROOT / "bench" / "results" / "profile"
OWN = "/src/agentlog/"


ENTRY = {  # agentlog frames every main-thread stack passes through: not "own work"
    "agentlog/cli.py:main",
    "agentlog/commands/proxy.py:run",
    "agentlog/commands/proxy.py:_serve",
    "agentlog/proxy/service.py:_run",
    "agentlog/proxy/service.py:_serve",
    "agentlog/proxy/service.py:_run_mitmproxy",
}


def _parse(line: str) -> tuple[str, list[str], int] | None:
    """A py-spy raw line -> (thread label, ['file:function', ...] outermost first, count)."""
    stack, _, count_text = line.rpartition(" ")
    if not count_text.isdigit():
        return None
    parts = stack.split(";")
    thread = parts.pop(0) if parts and parts[0].startswith(("thread ", "process ")) else ""
    frames = []
    for frame in parts:
        name, _, where = frame.rpartition(" (")
        path = where.rstrip(")").rsplit(":", 1)[0]
        frames.append(f"{_short(path)}:{name or frame}")
    return thread, frames, int(count_text)


def _short(path: str) -> str:
    for marker in ("/src/", "/site-packages/", "/lib/python3.13/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def analyse(raw: Path) -> dict:
    total = 0
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own_inclusive: Counter[str] = Counter()  # agentlog's own functions, with their callees
    own_any = 0  # samples with any agentlog function (not just the entry frames) on the stack
    leaf: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        thread, frames, count = parsed
        total += count
        threads[thread] += count
        for key in set(frames):
            inclusive[key] += count
        own = {f for f in frames if f.startswith("agentlog/") and f not in ENTRY}
        for key in own:
            own_inclusive[key] += count
        if own:
            own_any += count
        if frames:
            leaf[frames[-1]] += count
    return {
        "total": total,
        "threads": threads,
        "inclusive": inclusive,
        "own_inclusive": own_inclusive,
        "own_any": own_any,
        "leaf": leaf,
    }


def _thread_cpu(pid: int) -> dict[str, tuple[float, float]]:
    """(user, system) CPU seconds per thread id of process `pid`."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = stat_fields(task / "stat")
        except OSError:
            continue
        out[task.name] = (int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK)
    return out


def _thread_name(a: dict, tid: str) -> str:
    for label in a["threads"]:
        if f"({tid})" in label:
            return label.split(":", 1)[-1].strip() or tid
    return f"tid {tid}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=15.0, help="profiled load per proxy")
    p.add_argument("--conns", type=int, default=8)
    p.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args()
    py_spy = shutil.which("py-spy") or str(BIN / "py-spy")
    if not Path(py_spy).exists():
        print("profile_proxy: py-spy not found; .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    print(f"$ {shlex.join(sys.orig_argv)}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="agentlog-prof-"))
    bench = Bench(tmp, stream_baseline=True)
    results = {}
    try:
        bench.start()
        warmup = 1.0
        for setup in ("mitmdump", STREAM_SETUP, "agentlog"):
            raw = OUT / f"{setup}.txt"
            spy = subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(bench.procs[setup].pid),
                    "--rate",
                    str(args.rate),
                    "--duration",
                    str(int(args.seconds)),
                    "--format",
                    "raw",
                    "--function",
                    "--threads",
                    "--full-filenames",
                    "--gil",
                    "--output",
                    str(raw),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            time.sleep(0.5)  # py-spy attaches; the client's warmup covers the rest
            pid = bench.procs[setup].pid
            before = _thread_cpu(pid)
            load = bench.client(
                setup, "load", conns=args.conns, seconds=args.seconds - warmup, warmup=warmup
            )
            after = _thread_cpu(pid)
            _, err = spy.communicate(timeout=args.seconds + 30)
            if spy.returncode != 0:
                print(f"py-spy failed for {setup}:\n{err}", file=sys.stderr)
                return 1
            # approximate: the client's window is a bit shorter than py-spy's
            requests = load["rps"] * args.seconds
            analysis = analyse(raw)
            analysis["thread_cpu"] = {
                tid: tuple(
                    x - y for x, y in zip(after[tid], before.get(tid, (0.0, 0.0)), strict=True)
                )
                for tid in after
            }
            results[setup] = (analysis, load, requests)
    finally:
        bench.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    rate = args.rate
    print()
    for setup, (a, load, requests) in results.items():
        cpu = load["cpu_pct"]["proxy"] / 100
        busy = {tid: t for tid, t in a["thread_cpu"].items() if sum(t) > 0.01}
        all_threads = sum(sum(t) for t in a["thread_cpu"].values()) or 1.0
        per_req = (
            1e6
            / (load["rps"] * (args.seconds - warmup))
            * (cpu * (args.seconds - warmup) / all_threads)
        )  # scale the thread split (it includes setup and warmup) to the measured window
        print(
            f"{setup:9s} {load['rps']:7.0f} req/s at {100 * cpu:3.0f}% CPU = "
            f"{cpu / load['rps'] * 1e6:5.0f} us CPU/request; "
            f"GIL held {a['total'] / rate / requests * 1e6:5.0f} us/request"
        )
        print(
            "          CPU by thread: "
            + ", ".join(
                f"{_thread_name(a, tid)} {100 * sum(t) / all_threads:.0f}% "
                f"(user {t[0] * per_req:.0f} + sys {t[1] * per_req:.0f} us/req)"
                for tid, t in busy.items()
            )
        )
    if "agentlog" in results:
        a, _, requests = results["agentlog"]
        us = 1e6 / rate / requests
        print()
        print(
            f"agentlog: GIL samples with agentlog's own code on the stack: "
            f"{100 * a['own_any'] / a['total']:.1f}% ({a['own_any'] * us:.0f} us/request)"
        )
        print(f"{'inclusive':>9s} {'us/req':>7s}  file:function (src/agentlog, incl. callees)")
        for key, n in a["own_inclusive"].most_common(args.top):
            print(f"{100 * n / a['total']:8.1f}% {n * us:7.1f}  {key}")
    for mine, base in (
        ("agentlog", "mitmdump"),
        (STREAM_SETUP, "mitmdump"),
        ("agentlog", STREAM_SETUP),
    ):
        a, _, a_req = results[mine]
        m, _, m_req = results[base]
        print()
        print(f"{mine} over {base}: largest increases, GIL us/request inclusive, top {args.top}:")
        deltas = Counter(
            {
                k: a["inclusive"][k] / rate / a_req * 1e6 - m["inclusive"][k] / rate / m_req * 1e6
                for k in set(a["inclusive"]) | set(m["inclusive"])
            }
        )
        roots = {k for k, n in a["inclusive"].items() if n >= 0.9 * a["total"]}
        for key, d in [(k, d) for k, d in deltas.most_common() if k not in roots][: args.top]:
            value = a["inclusive"][key] / rate / a_req * 1e6
            print(f"{d:+8.1f}  ({mine} {value:6.1f})  {key}")
    print()
    print(f"hottest leaf functions (self time), top {args.top}:")
    for setup, (a, _, requests) in results.items():
        us = 1e6 / rate / requests
        print(f"-- {setup}")
        for key, n in a["leaf"].most_common(args.top):
            print(f"{100 * n / a['total']:8.1f}% {n * us:7.1f} us/req  {key}")
    print(f"\nraw stacks (py-spy collapsed format, for flamegraph.pl or speedscope): {OUT}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
