"""The UI page in chromium: load to first rows, and live latency, on a large journal.

    .venv/bin/python bench/bench_ui_page.py                      # 1,000,000 events
    .venv/bin/python bench/bench_ui_page.py --exchanges 20000    # a quick look
    .venv/bin/python bench/bench_ui_page.py --logs DIR           # a journal made before

1. Writes a journal of --exchanges request+response pairs (tests/fakes/journal.py:
   realistic headers, some JSON bodies) unless --logs names one, and indexes it
   (`agentlog reindex`) so the UI starts on a whole index.
2. Starts `agentlog ui` on it and Debian's chromium (headless, driven by Playwright),
   signed in once with the token URL.
3. Page load: --loads navigations to the list, and as many to a domain-filtered
   view; each timed from navigation start to the page's `agentlog:rows` mark
   (set when the first rows are in the DOM).
4. Live latency: --live exchanges appended to the journal, one every --every
   seconds (the request line, then 20 ms later the response line); each timed
   from the response line's write(2) to its row in the page showing the status
   (a MutationObserver in the page notes the time; both are this machine's clock).

Results go to stdout and bench/results/ui_page.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, announce, fmt, percentile, verdict, write_results

sys.path.insert(0, str(ROOT))

from playwright.sync_api import sync_playwright  # noqa: E402

from tests.browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402
from tests.fakes.journal import JournalMaker  # noqa: E402
from tests.ui_harness import last_seq, start_ui  # noqa: E402

LOAD_TARGET_MS = 1000
LIVE_TARGET_MS = 1000

# In the page: the time each watched row first shows an HTTP status.
WATCH_ROWS = """() => {
  window.benchSeen = {};
  new MutationObserver(() => {
    const now = performance.timeOrigin + performance.now();
    for (const row of document.querySelectorAll('#rows tr.row')) {
      const id = row.getAttribute('data-id');
      if (id in window.benchSeen) continue;
      if (/^[0-9]{3}$/.test(row.querySelector('.outcome')?.textContent ?? '')) {
        window.benchSeen[id] = now;
      }
    }
  }).observe(document.querySelector('#rows'),
             {childList: true, subtree: true, characterData: true});
}"""


def build(logs: Path, exchanges: int) -> JournalMaker:
    started = time.monotonic()
    maker = JournalMaker(logs)
    maker.write(exchanges)
    size = maker.logs.journal.stat().st_size
    print(
        f"journal: {maker.seq:,} events, {size / 1e6:.0f} MB in {time.monotonic() - started:.0f} s"
    )
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-m", "agentlog", "reindex", "--logs", str(logs)],
        check=True,
        capture_output=True,
    )
    print(f"reindex: {time.monotonic() - started:.0f} s")
    return maker


def go_on(logs: Path) -> JournalMaker:
    """A maker that appends to an existing journal, its seq continued."""
    maker = JournalMaker(logs, seed=int(time.time()))
    maker.seq = last_seq(logs)
    maker.t = time.time()
    return maker


def page_loads(page, base: str, loads: int, query: str) -> list[float]:
    times = []
    for _ in range(loads):
        page.goto(f"{base}/{query}")
        page.wait_for_function("() => performance.getEntriesByName('agentlog:rows').length > 0")
        times.append(
            page.evaluate("() => performance.getEntriesByName('agentlog:rows')[0].startTime")
        )
    return sorted(times)


def live_latencies(page, maker: JournalMaker, count: int, every: float) -> list[float]:
    page.evaluate(WATCH_ROWS)
    written: dict[str, float] = {}
    fd = os.open(maker.logs.journal, os.O_WRONLY | os.O_APPEND)
    try:
        n = 10_000_000
        while len(written) < count:
            n += 1
            request, closing = maker.exchange(n)
            if b'"event":"response"' not in closing:
                continue  # the maker makes every 97th exchange an error
            id = json.loads(request)["id"]
            os.write(fd, request)
            time.sleep(0.02)
            os.write(fd, closing)
            written[id] = time.time() * 1000
            time.sleep(every)
    finally:
        os.close(fd)
    deadline = time.monotonic() + 10
    seen: dict[str, float] = {}
    while time.monotonic() < deadline:
        seen = page.evaluate("() => window.benchSeen")
        if all(id in seen for id in written):
            break
        time.sleep(0.1)
    missing = [id for id in written if id not in seen]
    if missing:
        print(f"{len(missing)} rows never showed their status within 10 s")
    return sorted(seen[id] - t for id, t in written.items() if id in seen)


def summary(name: str, values: list[float], target: float) -> dict:
    p50, p95 = percentile(values, 0.5), percentile(values, 0.95)
    print(
        f"{name:<30} p50 {fmt(p50, 0):>5} ms  p95 {fmt(p95, 0):>5} ms"
        f"  max {fmt(values[-1], 0):>5} ms"
        f"  (target p95 <= {target:.0f} ms: {verdict(p95 <= target)})"
    )
    return {"p50_ms": p50, "p95_ms": p95, "max_ms": values[-1], "n": len(values), "raw_ms": values}


def main() -> None:
    doc = __doc__ or ""
    p = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    p.add_argument(
        "--exchanges",
        type=int,
        default=500_000,
        help="request+response pairs (default 500,000: 1,000,000 events)",
    )
    p.add_argument(
        "--logs", type=Path, help="use this logs directory (its journal) instead of writing one"
    )
    p.add_argument("--loads", type=int, default=20, help="page loads per view (default 20)")
    p.add_argument("--live", type=int, default=50, help="live exchanges timed (default 50)")
    p.add_argument(
        "--every", type=float, default=0.2, help="seconds between live exchanges (default 0.2)"
    )
    args = p.parse_args()
    command, started = announce(), time.time()
    with tempfile.TemporaryDirectory(prefix="bench-ui-page-") as tmp:
        if args.logs:
            logs = args.logs
            maker = go_on(logs)
        else:
            logs = Path(tmp) / "logs"
            maker = build(logs, args.exchanges)
        events = last_seq(logs)
        ui = start_ui(logs)
        try:
            ui.wait_indexed(events, timeout=600)
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(ui.url)  # signs in: the cookie serves every later load
                page.wait_for_selector("#rows tr.row")
                print(f"{events:,} events indexed; chromium {browser.version}")
                result = {
                    "events": events,
                    "load": summary(
                        "page load to first rows",
                        page_loads(page, ui.base, args.loads, ""),
                        LOAD_TARGET_MS,
                    ),
                    "load_filtered": summary(
                        "  domain-filtered view",
                        page_loads(page, ui.base, args.loads, "?domain=api.github.com"),
                        LOAD_TARGET_MS,
                    ),
                }
                page.goto(ui.base + "/")
                page.wait_for_selector("#live.on")
                result["live"] = summary(
                    "live: response written -> row",
                    live_latencies(page, maker, args.live, args.every),
                    LIVE_TARGET_MS,
                )
                browser.close()
        finally:
            ui.stop()
    write_results(ROOT / "bench" / "results" / "ui_page.json", command, started, args, result)


if __name__ == "__main__":
    main()
