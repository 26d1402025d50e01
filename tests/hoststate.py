"""What the test suite could leave behind on the host, read so two readings compare equal.

Namespaces, links, the nftables ruleset and iptables, with counters and
timers stripped. Other test runs share this machine: whatever names a sandbox
of another process that is still running (`al<pid>s<n>`), or of an older copy
of this suite (`al<pid % 10000>x<n>`, which leaked iptables rules), is not
ours to judge and is left out of both readings.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
from collections.abc import Callable

from agentlog.sandbox import netns

COMMANDS = (
    ("ip", "netns", "list"),
    ("ip", "-br", "link"),
    ("nft", "list", "ruleset"),
    ("iptables-save",),
)
_OLD_NAME = re.compile(r"(?<![A-Za-z0-9])al(\d+)x\d+")
_VOLATILE = [
    (re.compile(r"\s*\(id: \d+\)"), ""),  # ip netns list
    (re.compile(r"counter packets \d+ bytes \d+"), "counter"),  # nft rules
    (re.compile(r"^\s*packets \d+ bytes \d+\s*$"), ""),  # nft named counters
    (re.compile(r" expires [0-9hms.]+"), ""),  # nft set elements
    (re.compile(r"\[\d+:\d+\]"), "[0:0]"),  # iptables-save
]


def foreign(line: str) -> bool:
    """Does this line name a sandbox another test run is responsible for?"""
    if (m := _OLD_NAME.search(line)) and int(m.group(1)) != os.getpid() % 10000:
        return True
    pid = netns.owner(line)
    return pid is not None and pid != os.getpid() and netns.alive(pid)


def normalise(text: str, is_foreign: Callable[[str], bool] = foreign) -> list[str]:
    """The lines that matter: no comments, counters or timers, no other run's tables or rules."""
    kept: list[str] = []
    skipping_table = False
    for line in text.splitlines():
        if skipping_table:
            skipping_table = line != "}"
            continue
        if line.startswith("table ") and is_foreign(line):
            skipping_table = True
            continue
        if line.startswith("#") or is_foreign(line):
            continue
        for pattern, replacement in _VOLATILE:
            line = pattern.sub(replacement, line)
        if line.strip():
            kept.append(line.rstrip())
    return kept


def snapshot() -> dict[str, list[str]]:
    found = {}
    for command in COMMANDS:
        if shutil.which(command[0]):
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            found[" ".join(command)] = normalise(done.stdout)
    return found


def differences(before: dict[str, list[str]], after: dict[str, list[str]]) -> str:
    return "\n".join(
        line
        for command in before
        for line in difflib.unified_diff(
            before[command], after.get(command, []), f"{command} (before)", "(after)", lineterm=""
        )
    )
