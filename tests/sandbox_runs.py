"""Running the real `agentlog run` for tests, and reading what it recorded.

The command runs as `nobody`, with the test allowlist (only the fakes, routed
to 127.0.0.1) plus what a test adds: nothing is dialled off this machine.
Scripts for the agent's side run with the system's python3, as an agent would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

AGENT_USER = "nobody"
PYTHON = "/usr/bin/python3"  # the system's: root's PATH may lead to pythons nobody can run
DNSWIRE = (Path(__file__).parent / "dnswire.py").read_text()


def agent_python(code: str, with_dnswire: bool = False) -> list[str]:
    """A system python3 running `code` (after tests/dnswire.py's functions, if asked)."""
    return [PYTHON, "-c", (DNSWIRE + "\n" if with_dnswire else "") + code]


def run_command(logs: Path, args: list[str], command: list[str]) -> list[str]:
    return [
        sys.executable, "-m", "agentlog", "run", "--logs", str(logs), "--user", AGENT_USER,
        *args, "--", *command,
    ]  # fmt: skip


def agentlog_run(
    logs: Path, args: list[str], *command: str, timeout: float = 90, **kwargs
) -> subprocess.CompletedProcess:
    """Run `command` under `agentlog run`, to its end (from / unless `cwd` says)."""
    return subprocess.run(
        run_command(logs, args, list(command)),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **{"cwd": "/", **kwargs},
    )


def start_run(logs: Path, args: list[str], *command: str, **kwargs) -> subprocess.Popen:
    """`agentlog run` in the background, in a process group of its own (as a shell's job)."""
    return subprocess.Popen(
        run_command(logs, args, list(command)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd="/",
        start_new_session=True,
        **kwargs,
    )


def events(logs: Path, kind: str | None = None) -> list[dict]:
    journal = logs / "requests.jsonl"
    if not journal.exists():
        return []
    found = [json.loads(line) for line in journal.read_bytes().splitlines()]
    return [e for e in found if kind is None or e["event"] == kind]


def wait_for(
    logs: Path, predicate: Callable[[list[dict]], bool], timeout: float = 15
) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = events(logs)
        if predicate(found):
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"journal never matched: {[e['event'] for e in found]}")
        time.sleep(0.05)


def sandbox_of(logs: Path) -> str:
    """The sandbox a run captured on: its veth's proxy end, without the `h`."""
    starts = [e for e in events(logs, "capture") if e["action"] == "start"]
    return starts[0]["interface"][:-1]


@contextmanager
def shared_dir() -> Iterator[Path]:
    """A directory anyone may enter (pytest's own are root's alone): the logs directory
    must be kept from the agent by agentlog, not by where the tests happen to live."""
    path = Path(tempfile.mkdtemp(prefix="agentlog-run-test-", dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        subprocess.run(["rm", "-rf", str(path)], check=False)
