"""What every bench/ script shares: paths, statistics and formatting, /proc and
socket helpers, the load options, and the run header and JSON results file.

The scripts run as `python bench/SCRIPT.py`, so bench/ is on sys.path and they
`import common`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"  # the upstream and every proxy of bench_proxy.py listen here
CLK_TCK = os.sysconf("SC_CLK_TCK")

# ---------------------------------------------------------------------------
# Statistics and formatting
# ---------------------------------------------------------------------------


def median(values: list[float]) -> float:
    """The median without the NaNs (skipped metrics); NaN if nothing is left."""
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def fmt(value: float | None, digits: int = 2) -> str:
    """A table cell: '-' for a metric that is missing or NaN."""
    if value is None or value != value:
        return "-"
    return f"{value:.{digits}f}"


def verdict(ok: bool | None) -> str:
    return "-" if ok is None else "ok" if ok else "MISSED"


def no_nan(value: object) -> object:
    """NaN (a metric that was skipped) -> null: keep the JSON strict."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value


# ---------------------------------------------------------------------------
# Processes: CPU time from /proc
# ---------------------------------------------------------------------------


def stat_fields(path: str | Path) -> list[str]:
    """The fields of a /proc/.../stat file after `(comm)`: [0] is the state, [1] the
    ppid, [11] and [12] user and system jiffies, [19] the start time."""
    with open(path) as f:
        return f.read().rsplit(")", 1)[1].split()


def proc_cpu(pid: int) -> float:
    """CPU seconds (user+system, all threads) used so far by process `pid`."""
    fields = stat_fields(f"/proc/{pid}/stat")
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process, and of this one as "client"."""
    snap = {name: proc_cpu(pid) for name, pid in pids.items()}
    snap["client"] = time.process_time()
    return snap


def cpu_share(before: dict[str, float], after: dict[str, float], wall: float) -> dict:
    """% of one CPU each process used between two snapshots `wall` seconds apart."""
    return {k: round(100 * (after[k] - before[k]) / wall, 1) for k in before}


def cpu_text(cpu: dict) -> str:
    return " ".join(f"{k} {v:.0f}%" for k, v in cpu.items())


# ---------------------------------------------------------------------------
# Processes: waiting for them to be ready
# ---------------------------------------------------------------------------


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {HOST}:{port} after {timeout}s")


def wait_file_text(path: Path, text: str, proc: subprocess.Popen, timeout: float) -> str:
    """The first line of `path` containing `text`, once `proc` has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        content = path.read_text(errors="replace") if path.exists() else ""
        for line in content.splitlines():
            if text in line:
                return line
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}:\n{content}")
        time.sleep(0.05)
    raise RuntimeError(f"{path} never said {text!r}")


# ---------------------------------------------------------------------------
# Command line, header and results file
# ---------------------------------------------------------------------------


def load_parser(doc: str) -> argparse.ArgumentParser:
    """The options every load benchmark here shares."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=10.0,
        help="load-test time per setup, split over the rounds (default 10)",
    )
    p.add_argument("--rounds", type=int, default=3, help="rounds, setups alternating (default 3)")
    p.add_argument("--conns", type=int, default=8, help="concurrent keep-alive connections")
    p.add_argument(
        "--warmup",
        type=float,
        default=0.5,
        help="unmeasured seconds before each load phase (default 0.5)",
    )
    return p


def announce() -> str:
    """Print the command line and the machine it runs on; return the command."""
    command = shlex.join(sys.orig_argv)
    print(f"$ {command}")
    print(
        f"# {platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        flush=True,
    )
    return command


def mitmproxy_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("mitmproxy")
    except Exception:  # noqa: BLE001
        return None


def write_results(
    path: Path,
    command: str,
    started: float,
    args: argparse.Namespace,
    result: dict,
    **machine: object,
) -> None:
    """The JSON results file: how the run was made (command, start time, machine,
    options), then `result`. `machine` adds entries to the machine's description."""
    document = {
        "command": command,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "mitmproxy": mitmproxy_version(),
            **machine,
        },
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **result,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(no_nan(document), indent=2) + "\n")
    print(f"wrote {path}")
