"""Sandboxes left behind by a run that was killed (SIGKILL, a crash, a power cut).

Everything a sandbox makes carries its name, `al<pid>s<n>`, and so the pid of
the run that made it: the namespace, both ends of its veth pair, its
nftables table, its files (sandbox/files.py). A sandbox whose owner is no
longer running is a leftover: its processes are killed and all of it removed.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
from pathlib import Path

from agentlog.sandbox import firewall, netns
from agentlog.sandbox.files import NETNS_ETC, RUN_ROOT, SandboxFiles

_TABLE = re.compile(r"^table inet agentlog_(al\d+s\d+)$", re.M)


def sandbox_names() -> set[str]:
    """The name of every sandbox with anything left on this host."""
    found: set[str] = set()
    listings = [
        _run("ip", "netns", "list"),
        _run("ip", "-o", "link"),
        *(" ".join(p.name for p in d.iterdir()) for d in (RUN_ROOT, NETNS_ETC) if d.is_dir()),
    ]
    for text in listings:
        found |= {m.group(0) for m in netns.NAME.finditer(text)}
    found |= set(_TABLE.findall(_run("nft", "list", "tables")))
    return found


def leftovers() -> list[str]:
    """Sandboxes whose owner is gone, oldest owner first."""
    names = [n for n in sandbox_names() if not netns.alive(netns.owner(n) or 0)]
    return sorted(names, key=lambda n: (netns.owner(n) or 0, n))


def kill_inside(name: str) -> None:
    """Kill every process in the sandbox's namespace, and wait until none is left."""
    for _ in range(50):
        pids = [int(p) for p in _run("ip", "netns", "pids", name).split() if p.isdigit()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait_gone(pids)


def _wait_gone(pids: list[int]) -> None:
    import time

    deadline = time.monotonic() + 2
    while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in pids):
        time.sleep(0.02)


def remove(name: str) -> None:
    """Remove a sandbox: its processes, its table, its namespace and link, its files."""
    kill_inside(name)
    firewall.remove(f"agentlog_{name}")
    netns.remove(name)
    SandboxFiles(name).remove()


def clean() -> list[str]:
    """Remove every leftover sandbox; their names."""
    removed = []
    for name in leftovers():
        remove(name)
        removed.append(name)
    return removed


def _run(*command: str) -> str:
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        return ""
    return done.stdout
